#!/bin/bash
# Starts WORLD ranks of ARTIFACT as torchrun would: RANK, LOCAL_RANK,
# WORLD_SIZE, MASTER_ADDR and MASTER_PORT, no rendezvous directory. With
# AGENT=1, as torchrun's agent does: TORCHELASTIC_RUN_ID set and MASTER_PORT
# held by another listener (the agent's own store).
# Passes the remaining arguments to trlc run; prints each exit status.
artifact=$1 world=$2
shift 2
port=$((20000 + RANDOM % 20000))
if [ "$AGENT" = 1 ]; then
  python3 -c "
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port)); s.listen(); time.sleep(60)" &
  holder=$!
  export TORCHELASTIC_RUN_ID=test
  sleep 0.3
fi
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
[ -n "$holder" ] && kill "$holder" 2> /dev/null
exit 0
