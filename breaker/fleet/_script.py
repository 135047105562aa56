"""The fleet's sync script (Lua, run by Redis) and the layout of its arguments and answer.

Cost. Redis runs one script at a time and blocks every other client meanwhile, so the script does per call a
fixed number of Redis commands, whatever the number of commands it syncs, plus per command only field work in
hashes shared by the namespace (a field per command, read and written with one variadic HMGET and HSET for all):

- a process sends only the commands that need it (calls since the last sync, a probe outcome, an open fleet past
  its sleep window, a state it does not know yet): an idle command costs nothing;
- a per-namespace version (``{ns}:breaker-version``) moves at every change of a fleet state, and a sorted set
  (``{ns}:breaker-changes``: command -> the version of its last change) says which: a process sends the version
  it knows; when it is current (the common case, read in O(1)), the states the process knows are current and its
  counts go in without reading each command's state; else it learns the changed commands' states only;
- the window keeps running totals per command (``{ns}:breaker-window:<window ms>:<buckets>:r`` and ``:e``) and
  a hash per bucket; a bucket that leaves the window is subtracted once, by the first sync that sees it leave
  (``:lo``, the oldest bucket counted), not re-read by every sync.

Corruption. Every value read is checked: a key of the wrong type is deleted and rebuilt (reported by name); a
command's field that is not what the script writes (a state other than open/closed, a generation or opening
time that is no integer, a count that is no non-negative integer) makes that command's state restart closed in
a new generation, or its window restart empty, and the command is reported corrupt; the other commands go on.
"""

from __future__ import annotations

from typing import Final

#: Commands per script call: one call stays well under 1 ms of Redis time (see benchmarks/bench_fleet.py).
CHUNK: Final = 100

#: Per-namespace keys, KEYS of every call: the process's sync mark, the version, the changes.
#: ARGV: token, sync number, the mark's TTL (ms), the namespace keys' TTL (ms), the version the process knows (-1:
#: none), the key prefix (``{ns}:breaker``), the number of profiles, then per profile: window (ms), buckets,
#: volume threshold, error threshold (%), sleep window (ms), lease (ms), quorum (1: the fleet's totals trip it; k > 1:
#: k processes whose own window is over the thresholds), state TTL (ms); then the number of
#: commands, then per command: its name, its profile (1-based), its mode ("f": the process knows it closed at
#: generation ``seen``; "s": read its state; "p": read its state, a call waiting here: only "p" takes a free probe
#: lease, so the probe goes where a call waits, never to an idle process; "ok"/"fail": the outcome of its probe),
#: ``seen``, requests and errors to add, and "1" if the process's own window is over the thresholds (a quorum's
#: vote; "0" or "" otherwise). A sync whose number is not above the mark's (a copy the client sent again
#: after a timeout) adds no counts and applies no outcome.
#: Answer: the version, 1 if the process must relearn every state, the number of keys repaired then their names,
#: the number of commands learnt (changed since the version the process knew, not in this call) then per each
#: name, state, ms since it opened, generation; then per command of the call: 1 if open (else 0), ms since it opened,
#: generation, the window's requests and errors, 1 if this process holds the probe lease, 1 if its data was
#: corrupt (and was repaired).
SCRIPT: Final = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mark, vkey, ckey = KEYS[1], KEYS[2], KEYS[3]
local pid, seq, mark_ttl, ns_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local known, P = tonumber(ARGV[5]), ARGV[6]
local repaired, epoch = {}, false

local function safe(cmd, key, ...)  -- a key of the wrong type is deleted (and reported), then the command runs
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'WRONGTYPE', 1, true) then return redis.call(cmd, key, ...) end  -- raises
    redis.call('DEL', key)
    table.insert(repaired, key)
    if key == ckey then epoch = true end  -- changes may be lost: every process relearns
    r = redis.call(cmd, key, ...)
  end
  return r
end
local function count(v)  -- a count as the script writes it, 0 if absent; nil: corrupt
  if not v then return 0 end
  local n = tonumber(v)
  if n and n >= 0 and n == math.floor(n) then return n end
  return nil
end
local function fmt(n) return string.format('%d', n) end

-- exactly once: a sync applies counts and outcomes only if its number is above the mark's
local fresh = seq > (tonumber(safe('GET', mark)) or 0)
if fresh then redis.call('SET', mark, seq, 'PX', mark_ttl) end

-- the version; missing or corrupt: a new epoch above every earlier version, marked by the member ''
local cur = count(safe('GET', vkey))
local vdirty = false
if not cur or cur == 0 then
  cur = now * 1000
  safe('ZADD', ckey, fmt(cur), '')
  vdirty = true
end
local function bump(name)
  cur = cur + 1
  safe('ZADD', ckey, fmt(cur), name)
  vdirty = true
end
local changed, resync, nchanged = {}, 0, 0
if known >= 0 and known ~= cur then
  if known > cur then resync = 1 else
    for _, name in ipairs(safe('ZRANGEBYSCORE', ckey, '(' .. fmt(known), '+inf', 'LIMIT', 0, 201)) do
      if name == '' then resync = 1 else changed[name] = true; nchanged = nchanged + 1 end
    end
    if nchanged > 200 then resync = 1 end
  end
end

-- a command's state hash: validated, a corrupt one restarts closed in a new generation
local function load(name, ttl)
  local key = P .. ':' .. name .. ':state'
  local before = #repaired
  local f = safe('HMGET', key, 'state', 'gen', 'opened')
  local state, gen, opened = f[1] or 'closed', count(f[2]), count(f[3])
  if #repaired > before or (state ~= 'closed' and state ~= 'open') or not gen or not opened
      or (state == 'open' and not f[3]) then
    gen = (gen or 0) + 1
    redis.call('DEL', key)
    redis.call('HSET', key, 'state', 'closed', 'gen', gen, 'opened', 0)
    redis.call('PEXPIRE', key, ttl)
    bump(name)
    return key, 'closed', gen, 0, true
  end
  return key, state, gen, opened, false
end

-- profiles: the window's keys, current bucket, and the roll of buckets that left the window
local np = tonumber(ARGV[7])
local profs = {}
for p = 1, np do
  local a = 7 + 8 * (p - 1)
  local window, buckets = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local width = math.max(1, math.floor(window / buckets))
  local W = P .. '-window:' .. window .. ':' .. buckets
  profs[p] = {
    window = window, buckets = buckets, volume = tonumber(ARGV[a + 3]), threshold = tonumber(ARGV[a + 4]),
    sleep = tonumber(ARGV[a + 5]), lease = tonumber(ARGV[a + 6]), quorum = tonumber(ARGV[a + 7]),
    ttl = tonumber(ARGV[a + 8]),
    width = width, idx = math.floor(now / width), W = W, r = W .. ':r', e = W .. ':e', lokey = W .. ':lo',
    keep = 2 * window + width, names = {}, rows = {},
  }
end
local function roll(p)
  local first = p.idx - p.buckets + 1  -- the oldest bucket of the window
  local lo = count(safe('GET', p.lokey))
  p.lo = first
  if lo == first then return end
  if not lo or lo == 0 or lo > first or first - lo >= p.buckets then
    redis.call('DEL', p.r, p.e)  -- nothing counted is still in the window (or the clock went back)
  else
    for b = lo, first - 1 do
      for _, kind in ipairs({'r', 'e'}) do
        local bkey = p.W .. ':' .. b .. ':' .. kind
        local all = safe('HGETALL', bkey)
        if #all > 0 then
          local names, olds = {}, {}
          for j = 1, #all, 2 do table.insert(names, all[j]); table.insert(olds, count(all[j + 1]) or 0) end
          local tot = safe('HMGET', p[kind], unpack(names))
          local upd = {}
          for j = 1, #names do
            table.insert(upd, names[j]); table.insert(upd, math.max(0, (count(tot[j]) or 0) - olds[j]))
          end
          redis.call('HSET', p[kind], unpack(upd))
          redis.call('DEL', bkey)
        end
      end
    end
  end
  redis.call('SET', p.lokey, first, 'PX', p.keep)
end
local function clear(p, name)  -- a command's window restarts empty
  redis.call('HDEL', p.r, name)
  redis.call('HDEL', p.e, name)
  for b = p.lo, p.idx do
    redis.call('HDEL', p.W .. ':' .. b .. ':r', name)
    redis.call('HDEL', p.W .. ':' .. b .. ':e', name)
  end
end

-- the commands: state (read only when the process may not know it), then counts per profile, batched; one
-- array per column (a table per command costs more than the rest of its work)
local nc = tonumber(ARGV[8 + 8 * np])
local base = 8 + 8 * np
local NAME, PROF, SEEN, DREQ, DERR, STATE, GEN, OPENED, ADD, R, E, GRANTED, BAD = {}, {}, {}, {}, {}, {}, {}, {}, {},
  {}, {}, {}, {}
local OVER = {}
for i = 1, nc do
  local a = base + 7 * (i - 1)
  local name, pi, mode, seen = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], tonumber(ARGV[a + 4])
  local p = profs[pi]
  NAME[i], PROF[i], GRANTED[i], BAD[i], OVER[i] = name, pi, 0, 0, ARGV[a + 7] == '1'
  if not p.lo then roll(p) end
  local state, gen, opened = 'closed', seen, 0  -- mode 'f': the state the process knows is current
  if mode ~= 'f' or changed[name] then
    changed[name] = nil
    local key, bad, holder
    key, state, gen, opened, bad = load(name, p.ttl)
    if bad then BAD[i] = 1 end
    holder = false
    if state == 'open' then holder = safe('GET', P .. ':' .. name .. ':probe') end
    -- the probe's outcome, from the lease holder only, for the generation it probed
    if fresh and (mode == 'ok' or mode == 'fail') and state == 'open' and holder == pid and seen == gen then
      if mode == 'ok' then state = 'closed'; opened = 0 else opened = now end
      gen = gen + 1
      redis.call('HSET', key, 'state', state, 'gen', gen, 'opened', opened)
      redis.call('DEL', P .. ':' .. name .. ':probe')
      clear(p, name)
      bump(name)
      holder = false
      seen = -1
    end
    if state == 'open' and now - opened >= p.sleep then
      if holder == pid then
        GRANTED[i] = 1
      elseif not holder and mode == 'p'
          and redis.call('SET', P .. ':' .. name .. ':probe', pid, 'NX', 'PX', p.lease) then
        GRANTED[i] = 1
      end
    end
    redis.call('PEXPIRE', key, p.ttl)
  end
  STATE[i], GEN[i], OPENED[i] = state, gen, opened
  if fresh and seen == gen and seen >= 0 then
    ADD[i], DREQ[i], DERR[i] = true, tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  else
    ADD[i], DREQ[i], DERR[i] = false, 0, 0
  end
  local rows = p.rows
  rows[#rows + 1] = i
  p.names[#rows] = name
end
local function valid(v)  -- count(), inlined where it runs per command
  if not v then return 0 end
  local n = tonumber(v)
  if n and n >= 0 and n % 1 == 0 then return n end
  return nil
end
for pi = 1, np do
  local prof = profs[pi]
  local rows, names = prof.rows, prof.names
  local m = #rows
  if m > 0 then
    local tr = safe('HMGET', prof.r, unpack(names))
    local te = safe('HMGET', prof.e, unpack(names))
    local cur_r, cur_e = prof.W .. ':' .. prof.idx .. ':r', prof.W .. ':' .. prof.idx .. ':e'
    local rn, en, anyerr = {}, {}, false
    for j = 1, m do
      local i = rows[j]
      local r, e = valid(tr[j]), valid(te[j])
      if not r or not e then clear(prof, NAME[i]); r, e, BAD[i] = 0, 0, 1 end
      R[i], E[i] = r, e
      if DREQ[i] > 0 then rn[#rn + 1] = i end
      if DERR[i] > 0 then en[#en + 1] = i end
    end
    -- the current bucket: read, add, write back (HINCRBY takes one field; HMGET and HSET take them all)
    for pass = 1, 2 do
      local list, bkey, D, T = rn, cur_r, DREQ, R
      if pass == 2 then list, bkey, D, T = en, cur_e, DERR, E end
      local k = #list
      if k > 0 then
        local fields = {}
        for j = 1, k do fields[j] = NAME[list[j]] end
        local bv = safe('HMGET', bkey, unpack(fields))
        local up = {}
        for j = 1, k do
          local i = list[j]
          local b = valid(bv[j])
          if not b then  -- a malformed bucket: this command's window restarts with this sync's counts
            clear(prof, NAME[i]); R[i], E[i], BAD[i], b = 0, 0, 1, 0
            if pass == 2 then R[i] = DREQ[i]; redis.call('HSET', cur_r, NAME[i], DREQ[i]) end
          end
          T[i] = T[i] + D[i]
          up[2 * j - 1], up[2 * j] = NAME[i], b + D[i]
        end
        redis.call('HSET', bkey, unpack(up))
        redis.call('PEXPIRE', bkey, prof.keep)
      end
    end
    local up, k = {}, 0
    for j = 1, m do
      local i = rows[j]
      if DREQ[i] > 0 or BAD[i] == 1 then up[k + 1], up[k + 2], k = NAME[i], R[i], k + 2 end
    end
    if k > 0 then redis.call('HSET', prof.r, unpack(up)) end
    up, k = {}, 0
    for j = 1, m do
      local i = rows[j]
      if DERR[i] > 0 or BAD[i] == 1 then up[k + 1], up[k + 2], k = NAME[i], E[i], k + 2 end
    end
    if k > 0 then redis.call('HSET', prof.e, unpack(up)) end
    redis.call('PEXPIRE', prof.r, prof.keep)
    redis.call('PEXPIRE', prof.e, prof.keep)
    redis.call('PEXPIRE', prof.lokey, prof.keep)
    -- trips on the fleet's totals, for the commands whose state is known closed; with a quorum, on the number of
    -- processes whose own window is over the thresholds (each sends its verdict; one older than the window lapses)
    local volume, threshold, quorum = prof.volume, prof.threshold, prof.quorum
    for j = 1, m do
      local i = rows[j]
      local r, e = R[i], E[i]
      local trips = false
      if ADD[i] and STATE[i] == 'closed' then
        if quorum > 1 then
          local okey = P .. ':' .. NAME[i] .. ':over'
          if OVER[i] then safe('ZADD', okey, now, pid) else safe('ZREM', okey, pid) end
          safe('ZREMRANGEBYSCORE', okey, '-inf', '(' .. fmt(now - prof.window))
          redis.call('PEXPIRE', okey, prof.keep)
          trips = safe('ZCARD', okey) >= quorum
          if trips then redis.call('DEL', okey) end
        else
          trips = r > 0 and r >= volume and math.floor((e * 200 + r) / (r * 2)) >= threshold
        end
      end
      if trips then
        local key, state, gen, opened, bad = load(NAME[i], prof.ttl)
        if bad then BAD[i] = 1 end
        if state == 'closed' then
          gen = gen + 1
          redis.call('HSET', key, 'state', 'open', 'gen', gen, 'opened', now)
          redis.call('PEXPIRE', key, prof.ttl)
          clear(prof, NAME[i])
          bump(NAME[i])
          STATE[i], GEN[i], OPENED[i] = 'open', gen, now  -- R, E: the figures that tripped it, answered once
        else
          STATE[i], GEN[i], OPENED[i] = state, gen, opened
        end
      end
    end
  end
end

-- the changes the process has not seen, for commands not in this call
local learnt = {}
if resync == 0 then
  for name in pairs(changed) do
    local _, state, gen, opened, _ = load(name, ns_ttl)
    table.insert(learnt, name); table.insert(learnt, state)
    table.insert(learnt, state == 'open' and now - opened or 0); table.insert(learnt, gen)
  end
end
if epoch then
  cur = math.max(cur + 1, now * 1000)
  redis.call('ZADD', ckey, fmt(cur), '')
  resync, vdirty = 1, true
end
if vdirty then redis.call('SET', vkey, fmt(cur), 'PX', ns_ttl) else redis.call('PEXPIRE', vkey, ns_ttl) end
redis.call('PEXPIRE', ckey, ns_ttl)

local out = {cur, resync, #repaired}
for _, key in ipairs(repaired) do out[#out + 1] = key end
out[#out + 1] = #learnt / 4
for _, v in ipairs(learnt) do out[#out + 1] = v end
local k = #out
for i = 1, nc do
  local open = STATE[i] == 'open'
  out[k + 1], out[k + 2], out[k + 3] = open and 1 or 0, open and now - OPENED[i] or 0, GEN[i]
  out[k + 4], out[k + 5], out[k + 6], out[k + 7] = R[i], E[i], GRANTED[i], BAD[i]
  k = k + 7
end
return out
"""
