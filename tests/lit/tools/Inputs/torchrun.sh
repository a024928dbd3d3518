#!/bin/bash
# Starts WORLD ranks of ARTIFACT as torchrun would: RANK, LOCAL_RANK,
# WORLD_SIZE, MASTER_ADDR and MASTER_PORT, no rendezvous directory.
# Passes the remaining arguments to trlc run; prints each exit status.
artifact=$1 world=$2
shift 2
port=$((20000 + RANDOM % 20000))
pids=()
for ((r = 0; r < world; r++)); do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=$world MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    TRLC_COMM_TIMEOUT=30 trlc run "$artifact" --threads 1 --quiet "$@" > /dev/null &
  pids+=($!)
done
for ((r = 0; r < world; r++)); do
  wait "${pids[$r]}"
  echo "rank $r exit $?"
done
