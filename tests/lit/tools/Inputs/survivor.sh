#!/bin/bash
# Starts ranks 0 and 1 of ARTIFACT by hand, as an outside launcher would;
# rank 1 dies at its third step. Prints rank 0's output and exit status.
artifact=$1 rdv=$2
rm -rf "$rdv" && mkdir -p "$rdv"
export WORLD_SIZE=2 TRLC_RENDEZVOUS_DIR=$rdv TRLC_COMM_TIMEOUT=20
RANK=1 TRLC_FAULT_EXIT=1:2 trlc run "$artifact" --threads 1 --quiet > /dev/null 2>&1 &
RANK=0 timeout 60 trlc run "$artifact" --threads 1 --quiet
echo "exit $?"
wait
