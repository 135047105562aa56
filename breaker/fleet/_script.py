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
CHUNK: Final = 200

#: Per-namespace keys, KEYS of every call: the process's sync mark, the version, the changes.
#: ARGV: token, sync number, the mark's TTL (ms), the namespace keys' TTL (ms), the version the process knows (-1:
#: none), the key prefix (``{ns}:breaker``), the number of profiles, then per profile: window (ms), buckets,
#: volume threshold, error threshold (%), sleep window (ms), lease (ms), state TTL (ms); then the number of
#: commands, then per command: its name, its profile (1-based), its mode ("f": the process knows it closed at
#: generation ``seen``; "s": read its state; "ok"/"fail": the outcome of its probe), ``seen``, requests and errors
#: to add. A sync whose number is not above the mark's (a copy the client sent again after a timeout) adds no
#: counts and applies no outcome.
#: Answer: the version, 1 if the process must relearn every state, the number of keys repaired then their names,
#: the number of commands learnt (changed since the version the process knew, not in this call) then per each
#: name, state, ms since it opened, generation; then per command of the call: state, ms since it opened,
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
  local a = 7 + 7 * (p - 1)
  local window, buckets = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local width = math.max(1, math.floor(window / buckets))
  local W = P .. '-window:' .. window .. ':' .. buckets
  profs[p] = {
    window = window, buckets = buckets, volume = tonumber(ARGV[a + 3]), threshold = tonumber(ARGV[a + 4]),
    sleep = tonumber(ARGV[a + 5]), lease = tonumber(ARGV[a + 6]), ttl = tonumber(ARGV[a + 7]),
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

-- the commands: state (read only when the process may not know it), then counts per profile, batched
local nc = tonumber(ARGV[8 + 7 * np])
local base = 8 + 7 * np
local rows = {}
for i = 1, nc do
  local a = base + 6 * (i - 1)
  local name, p, mode = ARGV[a + 1], profs[tonumber(ARGV[a + 2])], ARGV[a + 3]
  local row = {name = name, p = p, seen = tonumber(ARGV[a + 4]), dreq = tonumber(ARGV[a + 5]),
    derr = tonumber(ARGV[a + 6]), granted = 0, corrupt = 0}
  rows[i] = row
  if not p.lo then roll(p) end
  if mode == 'f' and not changed[name] then
    row.state, row.gen, row.opened = 'closed', row.seen, 0  -- the state the process knows is current
  else
    changed[name] = nil
    local key, state, gen, opened, bad = load(name, p.ttl)
    if bad then row.corrupt = 1 end
    local holder = false
    if state == 'open' then
      holder = safe('GET', P .. ':' .. name .. ':probe')
      if holder and bad then holder = false end
    end
    -- the probe's outcome, from the lease holder only, for the generation it probed
    if fresh and (mode == 'ok' or mode == 'fail') and state == 'open' and holder == pid and row.seen == gen then
      if mode == 'ok' then state = 'closed'; opened = 0 else opened = now end
      gen = gen + 1
      redis.call('HSET', key, 'state', state, 'gen', gen, 'opened', opened)
      redis.call('DEL', P .. ':' .. name .. ':probe')
      clear(p, name)
      bump(name)
      holder = false
      row.seen = -1
    end
    if state == 'open' and now - opened >= p.sleep then
      if holder == pid then
        row.granted = 1
      elseif not holder and redis.call('SET', P .. ':' .. name .. ':probe', pid, 'NX', 'PX', p.lease) then
        row.granted = 1
      end
    end
    redis.call('PEXPIRE', key, p.ttl)
    row.state, row.gen, row.opened = state, gen, opened
  end
  row.add = fresh and row.seen == row.gen and row.seen >= 0
  if not row.add then row.dreq, row.derr = 0, 0 end
  table.insert(p.rows, row)
  table.insert(p.names, name)
end
for p = 1, np do
  local prof = profs[p]
  local prows = prof.rows
  if #prows > 0 then
    local tr = safe('HMGET', prof.r, unpack(prof.names))
    local te = safe('HMGET', prof.e, unpack(prof.names))
    local cur_r, cur_e = prof.W .. ':' .. prof.idx .. ':r', prof.W .. ':' .. prof.idx .. ':e'
    local rn, en = {}, {}
    for j, row in ipairs(prows) do
      row.R, row.E = count(tr[j]), count(te[j])
      if not row.R or not row.E then clear(prof, row.name); row.R, row.E, row.corrupt = 0, 0, 1 end
      if row.dreq > 0 then table.insert(rn, row.name) end
      if row.derr > 0 then table.insert(en, row.name) end
    end
    for _, kind in ipairs({{'r', 'dreq', 'R', rn, cur_r}, {'e', 'derr', 'E', en, cur_e}}) do
      local field, total, names, bkey = kind[2], kind[3], kind[4], kind[5]
      if #names > 0 then
        local bv = safe('HMGET', bkey, unpack(names))
        local bup, j = {}, 0
        for _, row in ipairs(prows) do
          if row[field] > 0 then
            j = j + 1
            local b = count(bv[j])
            if not b then  -- a malformed bucket: this command's window restarts with this sync's counts
              clear(prof, row.name); row.R, row.E, row.corrupt, b = 0, 0, 1, 0
              if kind[1] == 'e' then row.R = row.dreq; redis.call('HSET', cur_r, row.name, row.dreq) end
            end
            row[total] = row[total] + row[field]
            table.insert(bup, row.name); table.insert(bup, b + row[field])
          end
        end
        redis.call('HSET', bkey, unpack(bup))
        redis.call('PEXPIRE', bkey, prof.keep)
      end
    end
    local tup = {}
    for _, row in ipairs(prows) do
      if row.dreq > 0 or row.derr > 0 or row.corrupt == 1 then
        table.insert(tup, row.name); table.insert(tup, row.R)
      end
    end
    if #tup > 0 then redis.call('HSET', prof.r, unpack(tup)) end
    tup = {}
    for _, row in ipairs(prows) do
      if row.derr > 0 or row.corrupt == 1 then table.insert(tup, row.name); table.insert(tup, row.E) end
    end
    if #tup > 0 then redis.call('HSET', prof.e, unpack(tup)) end
    redis.call('PEXPIRE', prof.r, prof.keep)
    redis.call('PEXPIRE', prof.e, prof.keep)
    redis.call('PEXPIRE', prof.lokey, prof.keep)
    -- trips on the fleet's totals, for the commands whose state is known closed
    for _, row in ipairs(prows) do
      local R, E = row.R, row.E
      if row.add and row.state == 'closed' and R > 0 and R >= prof.volume
          and math.floor((E * 200 + R) / (R * 2)) >= prof.threshold then
        local key, state, gen, opened, bad = load(row.name, prof.ttl)
        if bad then row.corrupt = 1 end
        if state == 'closed' then
          gen = gen + 1
          redis.call('HSET', key, 'state', 'open', 'gen', gen, 'opened', now)
          redis.call('PEXPIRE', key, prof.ttl)
          clear(prof, row.name)
          bump(row.name)
          row.state, row.gen, row.opened, row.R, row.E = 'open', gen, now, 0, 0
        else
          row.state, row.gen, row.opened = state, gen, opened
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
for _, key in ipairs(repaired) do table.insert(out, key) end
table.insert(out, #learnt / 4)
for _, v in ipairs(learnt) do table.insert(out, v) end
for _, row in ipairs(rows) do
  table.insert(out, row.state)
  table.insert(out, row.state == 'open' and now - row.opened or 0)
  table.insert(out, row.gen)
  table.insert(out, row.R)
  table.insert(out, row.E)
  table.insert(out, row.granted)
  table.insert(out, row.corrupt)
end
return out
"""
