#!/bin/bash
# Starts `trlc run ARTIFACT --nproc 2`, waits for its two ranks, kills the
# launcher with SIGKILL (no chance to stop them itself) and reports how
# many ranks are still alive 10 s later. Ranks die with their launcher.
artifact=$1
trlc run "$artifact" --nproc 2 --threads 1 --quiet > /dev/null 2>&1 &
launcher=$!
ranks=""
for _ in $(seq 100); do
  ranks=$(pgrep -P "$launcher" | tr '\n' ' ')
  [ "$(echo $ranks | wc -w)" -ge 2 ] && break
  sleep 0.1
done
echo "ranks started: $(echo $ranks | wc -w)"
sleep 0.5
kill -9 "$launcher"
wait "$launcher" 2>/dev/null
alive=0
for _ in $(seq 100); do
  alive=0
  for r in $ranks; do kill -0 "$r" 2>/dev/null && alive=$((alive + 1)); done
  [ "$alive" -eq 0 ] && break
  sleep 0.1
done
echo "ranks alive after the launcher died: $alive"
for r in $ranks; do kill -9 "$r" 2>/dev/null; done
exit 0
