"""The fleet's sync as it was before issue 16 (commit c463634): its script and its arguments, kept so that
bench_fleet.py measures the old and the new cost in the same run.

Per command: three keys (state hash, window hash, lease) and 11 arguments; every shared command in every sync,
each read and written with its own Redis commands, and its whole window read with HGETALL.
"""

from __future__ import annotations

from typing import Final

SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pid = ARGV[1]
local n = tonumber(ARGV[2])
local out = {}
local fresh = true
local mark = KEYS[3 * n + 1]
if mark then
  local seq = tonumber(ARGV[3 + 11 * n])
  fresh = seq > (tonumber(redis.call('GET', mark)) or 0)
  if fresh then redis.call('SET', mark, seq, 'PX', tonumber(ARGV[4 + 11 * n])) end
end
for i = 0, n - 1 do
  local st, win, lease = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local a = 3 + 11 * i
  local seen, dreq, derr = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local window, buckets = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local volume, threshold = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local sleep, lease_ms, event, ttl = tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8]), ARGV[a + 9], tonumber(ARGV[a + 10])
  local fields = redis.call('HMGET', st, 'state', 'gen', 'opened')
  local state = fields[1] or 'closed'
  local gen = tonumber(fields[2]) or 0
  local opened = tonumber(fields[3]) or 0
  local changed = not fields[1]
  local holder = redis.call('GET', lease)
  -- the probe's outcome, from the lease holder only, for the generation it probed
  if fresh and event ~= '' and holder == pid and seen == gen then
    if event == 'ok' then state = 'closed' else state = 'open'; opened = now end
    gen = gen + 1
    changed = true
    redis.call('DEL', lease, win)
    holder = false
    seen = -1
  end
  local width = math.max(1, math.floor(window / buckets))
  local idx = math.floor(now / width)
  if fresh and seen == gen and dreq > 0 then
    redis.call('HINCRBY', win, idx .. ':r', dreq)
    if derr > 0 then redis.call('HINCRBY', win, idx .. ':e', derr) end
  end
  local requests, errors = 0, 0
  local all = redis.call('HGETALL', win)
  for j = 1, #all, 2 do
    local f = all[j]
    local sep = string.find(f, ':', 1, true)
    if tonumber(string.sub(f, 1, sep - 1)) > idx - buckets then
      if string.sub(f, sep + 1) == 'r' then requests = requests + tonumber(all[j + 1])
      else errors = errors + tonumber(all[j + 1]) end
    else
      redis.call('HDEL', win, f)
    end
  end
  if state == 'closed' and requests > 0 and requests >= volume
      and math.floor((errors * 200 + requests) / (requests * 2)) >= threshold then
    state = 'open'
    opened = now
    gen = gen + 1
    changed = true
    redis.call('DEL', win)
  end
  if changed then redis.call('HSET', st, 'state', state, 'gen', gen, 'opened', opened) end
  redis.call('PEXPIRE', st, ttl)
  if #all > 0 or (fresh and seen == gen and dreq > 0) then redis.call('PEXPIRE', win, window + width) end
  local granted = 0
  if state == 'open' and now - opened >= sleep then
    if holder == pid then
      granted = 1
    elseif not holder and redis.call('SET', lease, pid, 'NX', 'PX', lease_ms) then
      granted = 1
    end
  end
  table.insert(out, state)
  table.insert(out, now - opened)
  table.insert(out, gen)
  table.insert(out, requests)
  table.insert(out, errors)
  table.insert(out, granted)
end
return out
"""


def arguments(
    namespace: str, token: str, sequence: int, commands: list[str], delta: int
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of one old sync of commands (generation 0, delta requests each, default settings:
    window 10 s in 10 buckets, volume 20, threshold 50 %, sleep 5 s), as the old `Fleet._sync` built them."""
    keys: list[str] = []
    args: list[str | int] = [token, len(commands)]
    for name in commands:
        prefix = f"{{{namespace}}}:breaker:{name}"
        keys += [f"{prefix}:state", f"{prefix}:window", f"{prefix}:probe"]
        args += [0, delta, 0, 10_000, 10, 10**9, 50, 5_000, 7_000, "", 30_000]
    keys.append(f"{{{namespace}}}:breaker-sync:{token}")
    args += [sequence, 30_000]
    return keys, args
