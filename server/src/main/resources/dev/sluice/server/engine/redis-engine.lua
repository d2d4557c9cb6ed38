-- Sluice's engine on Redis: every read-modify-write of one resource is one call of this
-- script, so Redis runs it atomically. All keys of a resource share the hash tag {resource},
-- so the script also runs on Redis Cluster. Time is Redis's own (TIME), in microseconds,
-- unless a test passes one. The algorithm is the memory engine's (ResourceState): one token
-- bucket per dimension, a waiting room of three strict-priority FIFO lanes with aging, leases,
-- pauses, debt; see docs/ARCHITECTURE.md.
--
-- KEYS: 1 cfg (hash), 2 st (hash), 3 leases (zset permit -> expiry), 4 pl (hash permit -> record,
--       see permitOf),
--       5-7 q0..q2 (zset request id -> arrival sequence), 8 w (hash request id -> entry),
--       9 nodes (zset node -> last seen), 10 done (zset request id -> end time)
-- ARGV: 1 op, 2 now (us, or '' for Redis TIME), 3 node id, 4 resource name,
--       5 aging (us), 6 node timeout (us), then '/' and the lease grace (us) after an outage
--       (leases expire that much behind now: holders could not renew meanwhile), 7.. op arguments
--
-- Replies are arrays whose first element is a status word. Numbers that may be fractional are
-- returned as strings (Redis would truncate a Lua number to an integer).

local CFG, ST, LEASES, PL, W, NODES, DONE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[8], KEYS[9], KEYS[10]
local QS = { KEYS[5], KEYS[6], KEYS[7] }
-- Tenants (Fair.java): the default tenant waits in QS; another tenant t in QS[l] .. '|' .. t
-- (the same hash tag, so the same Cluster slot). TA: tenants with waiters, scored by virtual
-- time; TI: idle tenants that may be ahead, scored by virtual time + when last charged (us).
local DEFAULT = 'default'
local TA, TI = KEYS[2] .. ':ta', KEYS[2] .. ':ti'
local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local node = ARGV[3]
local rname = ARGV[4]
local aging = tonumber(ARGV[5])
local nodeTimeout, leaseGrace
do
  local t, g = string.match(ARGV[6], '^(%d+)/?(%d*)$')
  nodeTimeout = tonumber(t)
  leaseGrace = tonumber(g) or 0
end

local NEVER = -1
local DONE_KEEP = 60000000 -- request ids of ended acquires are remembered 60 s (dedupe)
-- Entry states: W waiting, G granted and held, R its permit ended (released or expired: the id
-- is used up while remembered; stored as G with the id in DONE, see usedUp), E ended without a
-- grant reaching its caller (timed out, cancelled, given back: the id is free), L dropped
-- because its node was lost (a retry goes back in line at its old place).
local MAX_GRANTS = 500      -- grants per call; the caller calls again at once for more

-- ------------------------------------------------------------------------------- helpers

local function split(s, sep)
  local out = {}
  if s == nil or s == '' then return out end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do out[#out + 1] = part end
  return out
end

-- "requests=1,tokens=1200" -> { requests = 1, tokens = 1200 }. Remembered for the rest of the
-- call (a batch's ops mostly carry the same few loads): callers only read what it returns.
local loads = {}
local function parseLoad(s)
  local out = loads[s or '']
  if out then return out end
  out = {}
  for _, kv in ipairs(split(s, ',')) do
    local k, v = string.match(kv, '^(.-)=(.*)$')
    if k then out[k] = tonumber(v) end
  end
  loads[s or ''] = out
  return out
end

local function fmt(x) return string.format('%.17g', x) end

-- A number as text, whole: Lua's own conversion (table.concat, ..) keeps 14 significant digits,
-- which at today's epoch in microseconds (16 digits) rounds a time to 100 us, and a forfeited
-- retry's sequence (FORFEIT_BASE + n) to FORFEIT_BASE. A call writes the same few numbers (now,
-- now + lease) many times: each is formatted once per call.
local texts = {}
local function whole(x)
  local t = texts[x]
  if t == nil then
    t = fmt(x)
    texts[x] = t
  end
  return t
end

local cfg = nil
local function loadCfg()
  local raw = redis.call('HGETALL', CFG)
  if #raw == 0 then return nil end
  local c = {}
  for i = 1, #raw, 2 do c[raw[i]] = raw[i + 1] end
  c.dl = split(c.dims, ',')
  c.rate, c.burst, c.amount = {}, {}, {}
  -- Jitter in ns; absent (limits stored before it existed) is 0: the rate as configured.
  local jit = tonumber(c.jit or '0')
  for _, d in ipairs(c.dl) do
    c.amount[d] = tonumber(c['a:' .. d])
    c.burst[d] = tonumber(c['b:' .. d])
    c.rate[d] = c.amount[d] / (tonumber(c['p:' .. d]) / 1000) -- units per microsecond
    if jit > 0 then
      -- The effective rate, min(r, b / (1/r + D)): RateSpec#perMicro(long), same operations.
      local eff = c.burst[d] / (tonumber(c['p:' .. d]) / 1000 / c.amount[d] + jit / 1000)
      if eff < c.rate[d] then c.rate[d] = eff end
    end
  end
  c.conc = tonumber(c.conc)
  c.lease = tonumber(c.lease)
  -- Held dimensions (LimitSpec.holds): "d=cap,...", in order; what the live permits hold is in
  -- ST 'hd:<d>' (see heldOf).
  c.hl, c.hcap = {}, {}
  for _, kv in ipairs(split(c.hold or '', ',')) do
    local d, v = string.match(kv, '^(.-)=(.*)$')
    c.hl[#c.hl + 1] = d
    c.hcap[d] = tonumber(v)
  end
  c.maxw = tonumber(c.maxw)
  -- A template's bucket ('settpl'): its pattern and how long its keys outlive idleness (us).
  c.tidle = tonumber(c.tidle or '0')
  -- Tenant policy: weights, floors, caps (RedisLimits.encode).
  c.tw, c.tf, c.tc, c.capped = {}, {}, {}, {}
  for i = 1, #raw, 2 do
    local k = raw[i]
    local kind, t = string.match(k, '^(t[wfc]):(.+)$')
    if kind == 'tw' then c.tw[t] = tonumber(raw[i + 1])
    elseif kind == 'tf' then c.tf[t] = tonumber(raw[i + 1])
    elseif kind == 'tc' then
      local rates = {}
      for _, part in ipairs(split(raw[i + 1], ';')) do
        local f = split(part, ':')
        local amount = tonumber(f[2])
        rates[#rates + 1] = { d = f[1], amount = amount, burst = tonumber(f[4]), rate = amount / (tonumber(f[3]) / 1000) }
      end
      c.tc[t] = rates
      c.capped[#c.capped + 1] = t
    end
  end
  return c
end

-- Live state: levels, pause, aging turn. Missing levels are 0: a bucket whose state Redis lost
-- starts empty, never full.
local st = nil
local function loadState()
  local raw = redis.call('HGETALL', ST)
  local s = {}
  for i = 1, #raw, 2 do s[raw[i]] = raw[i + 1] end
  s.t = tonumber(s.t or now)
  s.lvl = {}
  for _, d in ipairs(cfg.dl) do
    s.lvl[d] = math.min(cfg.burst[d], tonumber(s['l:' .. d] or '0'))
  end
  s.apause = tonumber(s.apause or '0')
  s.fpause = tonumber(s.fpause or '0')
  s.promote = s.promote ~= '0'
  -- Counted here and written once by saveState: one call per script, not one per grant.
  s.pseq = tonumber(s.pseq or '0')
  s.pseqDirty = false
  s.grantedDelta = 0
  -- Tokens taken net of refunds, per dimension (utilization): added to 'u:<dim>' by saveState.
  s.usedDelta = {}
  -- Refund caps (see refund): event counter, refund floor, per-dimension history (parsed lazily).
  s.ev = tonumber(s.ev or '0')
  s.rf = tonumber(s.rf or '0')
  s.hist = {}
  s.histDirty = {}
  s.capsDirty = false
  -- Tenants: fair queuing on ('mt'), the system's virtual time, the weight of those waiting.
  s.mt = s.mt == '1'
  s.vs = tonumber(s.vs or '0')
  s.aw = tonumber(s.aw or '0')
  -- Capped tenants' own buckets, once used: levels and when last refilled.
  s.cap = {}
  for _, t in ipairs(cfg.capped) do
    if s['ct:' .. t] then
      local lv = {}
      for i, r in ipairs(cfg.tc[t]) do lv[i] = tonumber(s['cl:' .. t .. ':' .. r.d] or r.burst) end
      s.cap[t] = { lv = lv, t = tonumber(s['ct:' .. t]) }
    end
  end
  return s
end

-- Nobody waits and every idle tenant fell behind: fair queuing starts over (Fair.spent).
local function resetFairIfSpent()
  if st.mt and redis.call('ZCARD', TA) == 0 then
    local last = redis.call('ZRANGE', TI, -1, -1, 'WITHSCORES')
    if #last == 0 or tonumber(last[2]) <= st.vs + now then
      redis.call('DEL', TI)
      st.mt, st.vs, st.aw = false, 0, 0
      st.fairReset = true
    end
  end
end

local function refill()
  resetFairIfSpent()
  local elapsed = now - st.t
  if elapsed <= 0 then return end
  st.t = now
  for _, d in ipairs(cfg.dl) do
    if st.lvl[d] < cfg.burst[d] then
      st.lvl[d] = math.min(cfg.burst[d], st.lvl[d] + elapsed * cfg.rate[d])
    end
  end
  for t, c in pairs(st.cap) do
    local e = now - c.t
    if e > 0 then
      c.t = now
      for i, r in ipairs(cfg.tc[t]) do
        if c.lv[i] < r.burst then c.lv[i] = math.min(r.burst, c.lv[i] + e * r.rate) end
      end
    end
  end
end

local templateExpire -- defined below, once what it reads is

local function saveState()
  if cfg.tpl and templateExpire then templateExpire() end
  local args = { 't', st.t, 'promote', st.promote and '1' or '0', 'apause', st.apause, 'fpause', st.fpause }
  if st.pseqDirty then
    args[#args + 1] = 'pseq'
    args[#args + 1] = st.pseq
  end
  for _, d in ipairs(cfg.dl) do
    args[#args + 1] = 'l:' .. d
    args[#args + 1] = fmt(st.lvl[d])
  end
  if st.capsDirty then
    args[#args + 1] = 'ev'
    args[#args + 1] = fmt(st.ev)
    args[#args + 1] = 'rf'
    args[#args + 1] = fmt(st.rf)
    for d, h in pairs(st.hist) do
      if st.histDirty[d] then
        local parts = {}
        for k = 1, #h.ev do parts[#parts + 1] = fmt(h.ev[k]) .. ':' .. fmt(h.df[k]) end
        args[#args + 1] = 'h:' .. d
        args[#args + 1] = table.concat(parts, ',')
      end
    end
  end
  if st.mt then
    args[#args + 1] = 'mt'
    args[#args + 1] = '1'
    args[#args + 1] = 'vs'
    args[#args + 1] = fmt(st.vs)
    args[#args + 1] = 'aw'
    args[#args + 1] = fmt(st.aw)
  elseif st.fairReset then
    redis.call('HDEL', ST, 'mt', 'vs', 'aw')
  end
  for t, c in pairs(st.cap) do
    args[#args + 1] = 'ct:' .. t
    args[#args + 1] = fmt(c.t)
    for i, r in ipairs(cfg.tc[t]) do
      args[#args + 1] = 'cl:' .. t .. ':' .. r.d
      args[#args + 1] = fmt(c.lv[i])
    end
  end
  redis.call('HSET', ST, unpack(args))
  if st.grantedDelta > 0 then redis.call('HINCRBY', ST, 'granted', st.grantedDelta) end
  for d, v in pairs(st.usedDelta) do
    if v ~= 0 then redis.call('HINCRBYFLOAT', ST, 'u:' .. d, fmt(v)) end
  end
end

local function addUsed(d, v)
  st.usedDelta[d] = (st.usedDelta[d] or 0) + v
end

local getEntry, putEntry, usedUp

-- A live permit's record in PL, one field per permit so a grant writes it and a release reads
-- and deletes it in one call each: its load (with ';R' appended once a retry took the permit
-- over), the refund event it was granted at, its request id, its tenant (empty: the default)
-- and the fair weight it was charged with, separated by tabs. '' for a permit adopted after a
-- data loss ('renew'). Returns the fields (absent ones nil), or nil for an unknown permit.
-- A permit granted by an older version keeps its load alone in its field and the rest in fields
-- '<permit>#g', '#r', '#t' and '#w' (legacy = true): read and dropped with it.
local function permitOf(pid)
  local raw = redis.call('HGET', PL, pid)
  if not raw then return nil end
  local f, n = {}, 0
  for part in string.gmatch(raw .. '\t', '([^\t]*)\t') do
    n = n + 1
    if part ~= '' or n == 1 then f[n] = part end
  end
  if n == 1 and raw ~= '' and raw ~= ';R' then
    local old = redis.call('HMGET', PL, pid .. '#g', pid .. '#r', pid .. '#t', pid .. '#w')
    for i = 1, 4 do f[i + 1] = old[i] or nil end
    f.legacy = true
  end
  return f
end

local function dropPermit(pid, f)
  if f and f.legacy then
    redis.call('HDEL', PL, pid, pid .. '#g', pid .. '#r', pid .. '#t', pid .. '#w')
  else
    redis.call('HDEL', PL, pid)
  end
end

local function putPermit(pid, f)
  redis.call('HSET', PL, pid, table.concat({ f[1], f[2] or '', f[3] or '', f[4] or '', f[5] or '' }, '\t'))
  if f.legacy then
    redis.call('HDEL', PL, pid .. '#g', pid .. '#r', pid .. '#t', pid .. '#w')
    f.legacy = nil
  end
end

-- Held dimensions, as in ResourceState: a permit holds its load on each from its grant until it
-- ends; ST 'hd:<d>' is the sum over the live permits, counted afresh at a limit change.
local function heldOf(d)
  return tonumber(redis.call('HGET', ST, 'hd:' .. d) or '0')
end

-- Adds (sign 1) or takes back (-1) what a permit of this load holds.
local function hold(loadStr, sign)
  if #cfg.hl == 0 or loadStr == nil or loadStr == '' then return end
  if string.sub(loadStr, -2) == ';R' then loadStr = string.sub(loadStr, 1, -3) end
  local load = parseLoad(loadStr)
  for _, d in ipairs(cfg.hl) do
    local v = load[d] or 0
    if v ~= 0 then redis.call('HINCRBY', ST, 'hd:' .. d, sign * v) end
  end
end

local function expireLeases()
  local gone = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now - leaseGrace, 'WITHSCORES', 'LIMIT', 0, 1000)
  for i = 1, #gone, 2 do
    local id = gone[i]
    local f = permitOf(id)
    local rid = f and f[3]
    hold(f and f[1], -1)
    redis.call('ZREM', LEASES, id)
    dropPermit(id, f)
    if rid then usedUp(rid, tonumber(gone[i + 1])) end
  end
  if #gone > 0 then redis.call('HINCRBY', ST, 'expired', #gone / 2) end
end

-- Refund caps (guarantee 1), as in ResourceState: a refund on dimension d for a permit granted
-- at event g is capped at min(refund, burst - highest level since g), what the bucket would hold
-- more had the grant been smaller. The highest level since any event is kept as up to 4
-- (event, deficit) suffix minima per dimension, oldest first, in ST field h:<d>.
local HISTORY = 4
local function hist(d)
  local h = st.hist[d]
  if h then return h end
  h = { ev = {}, df = {} }
  local raw = redis.call('HGET', ST, 'h:' .. d)
  if raw and raw ~= '' then
    for _, pair in ipairs(split(raw, ',')) do
      local c = string.find(pair, ':', 1, true)
      h.ev[#h.ev + 1] = tonumber(string.sub(pair, 1, c - 1))
      h.df[#h.df + 1] = tonumber(string.sub(pair, c + 1))
    end
  end
  st.hist[d] = h
  return h
end

-- Records the current deficit of d as a new event (before a level drops, after it rises).
local function observe(d)
  st.ev = st.ev + 1
  st.capsDirty = true
  local h = hist(d)
  if redis.call('ZCARD', LEASES) == 0 then
    -- No open permit was granted before this event: nobody will ask about it; forget the rest.
    if #h.ev > 0 then
      st.hist[d] = { ev = {}, df = {} }
      st.histDirty[d] = true
    end
    return
  end
  local deficit = cfg.burst[d] - st.lvl[d]
  local n = #h.ev
  while n > 0 and h.df[n] >= deficit do
    h.ev[n] = nil
    h.df[n] = nil
    n = n - 1
  end
  if n == HISTORY then
    -- Merge the neighbours closest in deficit: the older deficit at the newer event.
    local j = 1
    for k = 2, HISTORY - 1 do
      if h.df[k + 1] - h.df[k] < h.df[j + 1] - h.df[j] then j = k end
    end
    h.ev[j] = h.ev[j + 1]
    table.remove(h.ev, j + 1)
    table.remove(h.df, j + 1)
    n = n - 1
  end
  h.ev[n + 1] = st.ev
  h.df[n + 1] = deficit
  st.histDirty[d] = true
end

-- Adds back up to amount on d for a permit granted at event g (nil: before caps existed).
local function refund(d, g, amount)
  if amount <= 0 or not g or g <= st.rf then return end
  local cap = cfg.burst[d] - st.lvl[d]
  local h = hist(d)
  for k = 1, #h.ev do
    if h.ev[k] > g then
      if h.df[k] < cap then cap = h.df[k] end
      break
    end
  end
  local given = math.min(amount, math.max(0, cap))
  if given > 0 then
    addUsed(d, -given)
    st.lvl[d] = math.min(cfg.burst[d], st.lvl[d] + given)
    observe(d)
  end
end

-- After a limit change or an upstream report lowered the levels: older permits refund nothing.
local function forgetRefunds()
  st.ev = st.ev + 1
  st.rf = st.ev
  st.capsDirty = true
  for _, d in ipairs(cfg.dl) do
    st.hist[d] = { ev = {}, df = {} }
    st.histDirty[d] = true
  end
end

-- Microseconds the resource stays paused: 0 if not, NEVER until resumed.
local function pausedFor()
  if st.apause == -1 then return NEVER end
  local left = 0
  if st.apause > now then left = st.apause - now end
  if st.fpause > now then left = math.max(left, st.fpause - now) end
  if left == 0 then st.apause, st.fpause = 0, 0 end
  return left
end

-- Who holds the pause, for a timeout's message and the stats: microseconds left on an admin's
-- pause (-1 until resumed) and on the upstream feedback's, each 0 when none.
local function pauseParts()
  if pausedFor() == 0 then return 0, 0 end
  local a, f = 0, 0
  if st.apause == -1 then a = -1 elseif st.apause > now then a = st.apause - now end
  if st.fpause > now then f = st.fpause - now end
  return a, f
end

-- How long until `load` fits: 0 now, NEVER only an event can help.
local function waitFor(load)
  local wait = pausedFor()
  if wait == NEVER then return NEVER end
  if cfg.conc > 0 and redis.call('ZCARD', LEASES) >= cfg.conc then
    local first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
    wait = math.max(wait, math.max(1, tonumber(first[2]) + leaseGrace - now))
  end
  for _, d in ipairs(cfg.dl) do
    local deficit = (load[d] or 0) - st.lvl[d]
    if deficit > 1e-6 then
      -- Whole microseconds; an instant whole but for rounding noise is not pushed to the next.
      wait = math.max(wait, math.max(1, math.ceil(deficit / cfg.rate[d] - 1e-6)))
    end
  end
  for _, d in ipairs(cfg.hl) do
    local x = load[d] or 0
    if x > 0 and heldOf(d) + x > cfg.hcap[d] then
      if x > cfg.hcap[d] or redis.call('ZCARD', LEASES) == 0 then return NEVER end
      local first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
      wait = math.max(wait, math.max(1, tonumber(first[2]) + leaseGrace - now))
    end
  end
  return wait
end

-- Entries: node|lane|load|deadline|arrival|seq|state|permit|granted_at|attempt|tenant
-- attempt: the node's own name for the acquire call that owns the entry (a retry of the id on
-- the same node is another call): a late leave of an earlier call must not remove a later one.
function getEntry(id)
  local raw = redis.call('HGET', W, id)
  if not raw then return nil end
  local f = split(raw, '|')
  local state = f[7]
  -- A granted entry whose id is in DONE: its permit ended (usedUp).
  if state == 'G' and redis.call('ZSCORE', DONE, id) then state = 'R' end
  return {
    id = id, node = f[1], lane = tonumber(f[2]), loadStr = f[3], deadline = tonumber(f[4]),
    arrival = tonumber(f[5]), seq = tonumber(f[6]), state = state, permit = f[8],
    grantedAt = tonumber(f[9] or '0'), tok = (f[10] ~= '-') and f[10] or nil, tenant = f[11] or DEFAULT
  }
end

function putEntry(e)
  redis.call('HSET', W, e.id, table.concat({ e.node, e.lane, e.loadStr, whole(e.deadline), whole(e.arrival),
    whole(e.seq), e.state, e.permit or '-', whole(e.grantedAt or 0), e.tok or '-', e.tenant or DEFAULT }, '|'))
end

local function queued(e, sign)
  local load = parseLoad(e.loadStr)
  for d, v in pairs(load) do
    if v ~= 0 then redis.call('HINCRBY', ST, 'q:' .. d, sign * v) end
  end
end

-- ------------------------------------------------------------------------------- tenants
-- Fair queuing between tenants, Fair.java step for step (the same arithmetic in the same order).

local function qkey(t, l)
  if t == DEFAULT then return QS[l] end
  return QS[l] .. '|' .. t
end

local function weightOf(t) return cfg.tw[t] or 1 end

local function tenantWaiting(t)
  return redis.call('ZCARD', qkey(t, 1)) + redis.call('ZCARD', qkey(t, 2)) + redis.call('ZCARD', qkey(t, 3))
end

-- An idle tenant's virtual time now (before the system's floor), -inf if not remembered.
local function idleVt(t)
  local k = redis.call('ZSCORE', TI, t)
  if not k then return -math.huge end
  return tonumber(k) - now
end

local function putIdle(t, vt)
  redis.call('ZREM', TI, t)
  if vt > st.vs then redis.call('ZADD', TI, fmt(vt + now), t) end
end

local function activate(t)
  local vt = math.max(idleVt(t), st.vs)
  redis.call('ZREM', TI, t)
  redis.call('ZADD', TA, fmt(vt), t)
  st.aw = st.aw + weightOf(t)
end

local function deactivate(t)
  local vt = tonumber(redis.call('ZSCORE', TA, t))
  redis.call('ZREM', TA, t)
  st.aw = st.aw - weightOf(t)
  if redis.call('ZCARD', TA) == 0 then st.aw = 0 end
  putIdle(t, vt)
end

-- Fair queuing starts with the first tenant other than the default.
local function ensureFair(t)
  if st.mt or t == DEFAULT then return end
  st.mt = true
  if tenantWaiting(DEFAULT) > 0 then activate(DEFAULT) end
end

local function startOf(t)
  local a = redis.call('ZSCORE', TA, t)
  if a then return tonumber(a) end
  return math.max(idleVt(t), st.vs)
end

local function setVt(t, vt)
  if redis.call('ZSCORE', TA, t) then
    redis.call('ZADD', TA, fmt(vt), t)
  else
    putIdle(t, vt)
  end
end

-- The weight a tenant is charged with now: its own, raised by its floor.
local function effWeight(t)
  local w = weightOf(t)
  local f = cfg.tf[t] or 0
  if f <= 0 then return w end
  local others = st.aw
  if redis.call('ZSCORE', TA, t) then others = st.aw - w end
  local fw
  if f >= 1 then fw = 1e12 else fw = math.min(1e12, others * f / (1 - f)) end
  return math.max(w, fw)
end

local function chargeFair(t, c, weight)
  local start = startOf(t)
  if start > st.vs then st.vs = start end
  setVt(t, start + c / weight)
  redis.call('ZREMRANGEBYSCORE', TI, '-inf', fmt(st.vs + now))
end

-- Microseconds of quota a load takes on its binding dimension; 1 when it charges no rate.
local function cost(load)
  local c = -1
  for _, d in ipairs(cfg.dl) do
    local v = load[d] or 0
    if v > 0 then c = math.max(c, v / cfg.rate[d]) end
  end
  if c < 0 then return 1 end
  return c
end

-- A capped tenant's own buckets (full when first used), and its cap's rates; nil without a cap.
local function capState(t)
  local rates = cfg.tc[t]
  if not rates then return nil end
  local c = st.cap[t]
  if not c then
    local lv = {}
    for i, r in ipairs(rates) do lv[i] = r.burst end
    c = { lv = lv, t = now }
    st.cap[t] = c
  end
  return c, rates
end

local function capWaitFor(t, load)
  local c, rates = capState(t)
  if not c then return 0 end
  local wait = 0
  for i, r in ipairs(rates) do
    local deficit = (load[r.d] or 0) - c.lv[i]
    if deficit > 1e-6 then wait = math.max(wait, math.max(1, math.ceil(deficit / r.rate - 1e-6))) end
  end
  return wait
end

local function capAdd(t, delta)
  local c, rates = capState(t)
  if not c then return end
  for i, r in ipairs(rates) do
    local v = delta[r.d] or 0
    if v ~= 0 then c.lv[i] = math.max(-r.amount, math.min(r.burst, c.lv[i] + v)) end
  end
end

-- Units a tenant used, for stats: its own name when the policy names it (or it is the
-- default), else 'other' (TenantPolicy.statsKey).
local function statsKey(t)
  if t == DEFAULT or cfg.tw[t] or cfg.tf[t] or cfg.tc[t] then return t end
  return 'other'
end

local function countUse(t, v, sign)
  local k = statsKey(t)
  for _, d in ipairs(cfg.dl) do
    local x = v[d] or 0
    if x ~= 0 then redis.call('HINCRBYFLOAT', ST, 'tu:' .. k .. ':' .. d, fmt(sign * x)) end
  end
end

-- A settle or give-back of a tenant's permit: from `granted` to `used` (dimension -> units).
local function settleTenant(t, weight, granted, used)
  local delta, zero = {}, true
  for _, d in ipairs(cfg.dl) do
    delta[d] = (granted[d] or 0) - (used[d] or 0)
    if (used[d] or 0) ~= 0 then zero = false end
  end
  capAdd(t, delta)
  if weight then countUse(t, delta, -1) end
  if st.mt and weight then
    local was = cost(granted)
    local is = 0
    if not zero then is = cost(used) end
    if is ~= was then setVt(t, startOf(t) + (is - was) / weight) end
  end
end

-- The load tenant t has queued in lane l, per dimension, for wait estimates ('estimate').
local function queuedIn(e, sign)
  for d, v in pairs(parseLoad(e.loadStr)) do
    if v ~= 0 then redis.call('HINCRBY', ST, 'ql:' .. e.tenant .. ':' .. e.lane .. ':' .. d, sign * v) end
  end
end

-- Joins entry e to its tenant's lane (e.seq set); a tenant's first waiter makes it waiting.
local function qadd(e)
  local t = e.tenant
  ensureFair(t)
  -- Only fair queuing needs to know a tenant's first waiter: a resource without tenants skips it.
  local first = st.mt and tenantWaiting(t) == 0
  redis.call('ZADD', qkey(t, e.lane), e.seq, e.id)
  if first then activate(t) end
  if t ~= DEFAULT then redis.call('HINCRBY', ST, 'tq', 1) end
  queued(e, 1)
  queuedIn(e, 1)
end

-- Takes entry e out of its tenant's lane; a tenant whose last waiter left is idle again.
local function qrem(e)
  local t = e.tenant
  redis.call('ZREM', qkey(t, e.lane), e.id)
  queued(e, -1)
  queuedIn(e, -1)
  if t ~= DEFAULT then redis.call('HINCRBY', ST, 'tq', -1) end
  if (st.mt or t ~= DEFAULT) and tenantWaiting(t) == 0 then
    if st.mt then deactivate(t) end
    if t ~= DEFAULT then redis.call('HDEL', ST, 'tp:' .. t) end
  end
end

-- Every tenant with waiters: the default first, then by name.
local function waitingTenants()
  local out = {}
  for _, t in ipairs(redis.call('ZRANGE', TA, 0, -1)) do
    if t ~= DEFAULT then out[#out + 1] = t end
  end
  table.sort(out)
  table.insert(out, 1, DEFAULT)
  return out
end

local function promoteOf(t)
  if t == DEFAULT then return st.promote end
  return redis.call('HGET', ST, 'tp:' .. t) ~= '0'
end

local function setPromote(t, v)
  if t == DEFAULT then
    st.promote = v
  elseif v then
    redis.call('HDEL', ST, 'tp:' .. t)
  else
    redis.call('HSET', ST, 'tp:' .. t, '0')
  end
end

local function finish(e, state)
  e.state = state
  putEntry(e)
  -- A granted entry is remembered while its permit is held, then from when it ended.
  if state ~= 'G' then redis.call('ZADD', DONE, whole(now), e.id) end
end

-- The permit of request id rid ended at `at` (released or expired): the id is used up. Its
-- entry is left as it is, granted: a granted entry whose id is in DONE reads as R (getEntry),
-- which spares every release reading and writing the entry back. Only a live permit's record
-- names a request id, and while a permit lives its id's entry is G and not in DONE (a reuse of
-- the id takes it out of DONE and can come only after the permit ended).
function usedUp(rid, at)
  redis.call('ZADD', DONE, whole(at), rid)
end

-- How long a grant of this load stays fresh, in whole microseconds: half the burst's worth of
-- time (burst / rate / 2) on the tightest rate it charges, or -1 when it charges no rate
-- (ResourceState.freshMicros). A grant handed over later than that would reach the upstream
-- together with the grants made since.
local freshOf, freshCfg = {}, nil
local function freshFor(loadStr)
  if freshCfg ~= cfg then freshOf, freshCfg = {}, cfg end -- remembered for the call's limit
  local known = freshOf[loadStr or '']
  if known then return known end
  local load = parseLoad(loadStr)
  local fresh = -1
  for _, d in ipairs(cfg.dl) do
    if (load[d] or 0) > 0 then
      local t = math.floor(cfg.burst[d] * (tonumber(cfg['p:' .. d]) / 1000) / cfg.amount[d] / 2)
      if fresh < 0 or t < fresh then fresh = t end
    end
  end
  freshOf[loadStr or ''] = fresh
  return fresh
end

-- Whether a retry at `now` comes too late to be handed entry e's grant (ResourceState.late).
local function late(e)
  local fresh = freshFor(e.loadStr)
  return fresh >= 0 and now - e.grantedAt > fresh
end

-- What is left of entry e's freshness at `now`, -1 when it never goes stale.
local function freshLeft(e)
  local fresh = freshFor(e.loadStr)
  if fresh < 0 then return -1 end
  return math.max(0, fresh - (now - e.grantedAt))
end

-- The arrival sequence that puts a forfeited grant's retry at the head of its lane, behind the
-- retries forfeited before it (ResourceState.enqueueForfeited): below every plain sequence.
local FORFEIT_BASE = -1000000000000000
local function forfeitSeq()
  return FORFEIT_BASE + redis.call('HINCRBY', ST, 'fseq', 1)
end

local function nodeAlive(n)
  if n == node then return true end
  local seen = redis.call('ZSCORE', NODES, n)
  return seen and tonumber(seen) >= now - nodeTimeout
end

-- The head of tenant t's lane l, dropping entries whose node is gone or that outlived their
-- deadline (their node would have removed them: it is gone or partitioned).
local function headOf(t, l)
  while true do
    local h = redis.call('ZRANGE', qkey(t, l), 0, 0)
    if #h == 0 then return nil end
    local e = getEntry(h[1])
    if e == nil or e.state ~= 'W' then
      redis.call('ZREM', qkey(t, l), h[1])
    elseif not nodeAlive(e.node) or (e.node ~= node and now > e.deadline + nodeTimeout) then
      qrem(e)
      finish(e, 'L')
      redis.call('HINCRBY', ST, 'lost', 1)
    else
      e.load = parseLoad(e.loadStr)
      return e
    end
  end
end

-- Tenant t's next waiter and whether it is its priority pick (ResourceState.headOf).
local function tenantPick(t)
  local top, topLane = nil, nil
  for l = 1, 3 do
    local h = headOf(t, l)
    if h then
      top, topLane = h, l
      break
    end
  end
  if top == nil or not promoteOf(t) then return top, true end
  local aged = nil
  for l = topLane + 1, 3 do
    local h = headOf(t, l)
    if h and now - h.arrival >= aging and (aged == nil or h.arrival < aged.arrival) then aged = h end
  end
  if aged then return aged, false end
  return top, true
end

-- Set by pick: how long until a tenant passed over for its cap can go (us), or NEVER.
local capWait = NEVER

local function cappedPick(t)
  local e, priority = tenantPick(t)
  if e == nil then return nil end
  local w = capWaitFor(t, e.load)
  if w == 0 then return e, priority end
  if capWait == NEVER or w < capWait then capWait = w end
  return nil
end

-- The waiter to serve next and whether it is its tenant's priority pick (ResourceState.head):
-- the waiting tenant with the lowest virtual time whose own cap lets its head go.
local function pick()
  capWait = NEVER
  if not st.mt then return cappedPick(DEFAULT) end
  local i = 0
  while true do
    local m = redis.call('ZRANGE', TA, i, i)
    if #m == 0 then return nil end
    local e, priority = cappedPick(m[1])
    if e then return e, priority end
    i = i + 1
  end
end

local nowPrefix = nil
local function newPermitId()
  st.pseq = st.pseq + 1
  st.pseqDirty = true
  if nowPrefix == nil then nowPrefix = string.format('%.0f', now) .. '.' end
  return nowPrefix .. string.format('%.0f', st.pseq)
end

-- Takes the load, opens a lease, charges tenant t; returns the permit id.
local function take(load, loadStr, rid, t)
  for _, d in ipairs(cfg.dl) do
    if (load[d] or 0) > 0 then
      observe(d)
      addUsed(d, load[d])
    end
    st.lvl[d] = st.lvl[d] - (load[d] or 0)
  end
  local pid = newPermitId()
  redis.call('ZADD', LEASES, whole(now + cfg.lease), pid)
  local rec = { loadStr, fmt(st.ev), rid, nil, nil }
  hold(loadStr, 1)
  st.grantedDelta = st.grantedDelta + 1
  -- The tenant's part (ResourceState.chargeTenant): its own buckets, then its virtual time.
  if cfg.tc[t] then
    local minus = {}
    for _, d in ipairs(cfg.dl) do minus[d] = -(load[d] or 0) end
    capAdd(t, minus)
  end
  ensureFair(t)
  if st.mt then
    local w = effWeight(t)
    chargeFair(t, cost(load), w)
    rec[5] = fmt(w)
    countUse(t, load, 1)
  end
  if t ~= DEFAULT then rec[4] = t end
  putPermit(pid, rec)
  return pid
end

-- Grants for the calling node go back in the reply; other nodes hear on their channel.
local mine = {}
local function deliver(e)
  local waited = now - e.arrival
  if e.node == node then
    mine[#mine + 1] = e.id
    mine[#mine + 1] = e.permit
    mine[#mine + 1] = waited
    mine[#mine + 1] = freshFor(e.loadStr)
  else
    -- With the grant's time and freshness: a notice held up on the way is not handed over as
    -- it is (RedisWaiters#deliver).
    redis.call('PUBLISH', 'sluice:node:' .. e.node,
      table.concat({ 'G', rname, e.id, e.permit, waited, cfg.lease, string.format('%.0f', now),
        freshFor(e.loadStr) }, '\t'))
  end
end

-- Microseconds until a lower lane's head of tenant t, not aged yet, ages into a promotion (only
-- while a promotion is due), or NEVER: the pick can change then without any event.
local function nextAging(t)
  if not promoteOf(t) then return NEVER end
  local topLane = nil
  for l = 1, 3 do
    if redis.call('ZCARD', qkey(t, l)) > 0 then topLane = l; break end
  end
  if topLane == nil then return NEVER end
  local next = NEVER
  for l = topLane + 1, 3 do
    local h = headOf(t, l)
    if h and now - h.arrival < aging then
      local at = h.arrival + aging - now
      if next == NEVER or at < next then next = at end
    end
  end
  return next
end

local function sooner(a, b)
  if a == NEVER then return b end
  if b == NEVER then return a end
  return math.min(a, b)
end

-- Grants every waiter that can go now, in order. Returns the microseconds until the head can
-- go (0: call again, more may go; NEVER: only an event can help; no waiters: NEVER), or until a
-- lower lane's head ages into a promotion, or a tenant passed over for its cap can go, if sooner.
local function drain()
  local n = 0
  while n < MAX_GRANTS do
    local e, priority = pick()
    local capped = capWait
    if e == nil then return capped end
    local wait = waitFor(e.load)
    if wait ~= 0 then
      return sooner(sooner(wait, capped), nextAging(e.tenant))
    end
    setPromote(e.tenant, priority)
    e.permit = take(e.load, e.loadStr, e.id, e.tenant) -- charged while its tenant still waits
    qrem(e)
    e.grantedAt = now
    finish(e, 'G')
    deliver(e)
    n = n + 1
  end
  return 0
end

local function waitingCount()
  return redis.call('ZCARD', QS[1]) + redis.call('ZCARD', QS[2]) + redis.call('ZCARD', QS[3])
    + tonumber(redis.call('HGET', ST, 'tq') or '0')
end

-- A template's bucket leaves no keys once idle: every key expires when the buckets will be
-- full, the leases over, the pauses and the remembered request ids past, plus the idle grace
-- (ResourceState#idleExpiry on the memory store). Kept a day while anyone waits or it is paused
-- until resumed; every operation sets it again.
local DAY = 86400000000
templateExpire = function()
  local keep = 0
  local paused = pausedFor()
  if waitingCount() > 0 or paused == NEVER then
    keep = DAY
  else
    keep = paused
    local last = redis.call('ZRANGE', LEASES, -1, -1, 'WITHSCORES')
    if #last > 0 then keep = math.max(keep, tonumber(last[2]) - now) end
    for _, d in ipairs(cfg.dl) do
      local missing = cfg.burst[d] - st.lvl[d]
      if missing > 0 then keep = math.max(keep, missing / cfg.rate[d]) end
    end
    local done = redis.call('ZRANGE', DONE, -1, -1, 'WITHSCORES')
    if #done > 0 then keep = math.max(keep, tonumber(done[2]) + DONE_KEEP - now) end
    if st.mt then
      local ti = redis.call('ZRANGE', TI, -1, -1, 'WITHSCORES')
      if #ti > 0 then keep = math.max(keep, tonumber(ti[2]) - st.vs - now) end
    end
    keep = keep + cfg.tidle
  end
  local ms = math.max(1, math.ceil(keep / 1000))
  for _, k in ipairs({ CFG, ST, LEASES, PL, W, NODES, DONE, TA, TI }) do redis.call('PEXPIRE', k, ms) end
end

-- Forgets request ids that ended long ago (bounded work per call).
local function trimDone()
  local old = redis.call('ZRANGEBYSCORE', DONE, '-inf', now - DONE_KEEP, 'LIMIT', 0, 100)
  if #old == 0 then return end
  local raws = redis.call('HMGET', W, unpack(old))
  local gone = {}
  for i, id in ipairs(old) do
    -- An id back in line after its node was lost is waiting again: keep its entry. A granted
    -- one in DONE has ended (usedUp).
    local state = raws[i] and split(raws[i], '|')[7]
    if state ~= 'W' then gone[#gone + 1] = id end
  end
  if #gone > 0 then redis.call('HDEL', W, unpack(gone)) end
  redis.call('ZREM', DONE, unpack(old))
end

-- Common prologue of every state operation. Returns an error reply or nil.
local function open(expectVer)
  cfg = loadCfg()
  if cfg == nil then return { 'NOTFOUND' } end
  if expectVer ~= nil and expectVer ~= '' and cfg.ver ~= expectVer then return { 'STALE', cfg.ver } end
  st = loadState()
  redis.call('ZADD', NODES, now, node)
  if cfg.tpl then
    -- Made here by an operation that may not save: it goes with the bucket's other keys.
    local ttl = redis.call('PTTL', CFG)
    if ttl > 0 then redis.call('PEXPIRE', NODES, ttl) end
  end
  expireLeases()
  refill()
  return nil
end

-- Reply tail shared by operations that drain: now, wake, then the caller's grants.
local function tail(head, wake)
  local out = head
  out[#out + 1] = now
  out[#out + 1] = wake
  out[#out + 1] = cfg.lease
  for _, x in ipairs(mine) do out[#out + 1] = x end
  return out
end

local function drainAndSave(head)
  local wake = drain()
  saveState()
  return tail(head, wake)
end

-- ------------------------------------------------------------------------------- operations

-- One acquire, after open(). Returns its reply and whether the queue changed (the caller
-- then drains). `waiting` is the number of waiters, or nil if not counted yet.
local waiting = nil
local function acquireOne(ver, rid, lane, loadStr, timeout, tok, stalePid, tenant)
  if tok == '' then tok = nil end
  if tenant == nil or tenant == '' then tenant = DEFAULT end
  if ver ~= '' and cfg.ver ~= ver then return { 'STALE', cfg.ver }, false end
  local load = parseLoad(loadStr)
  local seq = nil
  local prev = getEntry(rid)
  if prev then
    -- One meaning for a request id on every store (Engine.acquire).
    local rec = prev.state == 'G' and permitOf(prev.permit)
    local held = rec and rec[1]
    -- The same call asking again (its node lost a reply, or came back after an outage) may hold
    -- the grant already; only a retry (another call), or the same call naming the permit it found
    -- stale and held back, forfeits a late grant.
    local same = tok ~= nil and prev.tok == tok and prev.node == node
    if held and late(prev) and (not same or (stalePid ~= nil and stalePid ~= '' and stalePid == prev.permit)) then
      -- Its grant waited too long for this caller: forfeited, its tokens stay spent, and the
      -- retry waits at the head of its lane for fresh capacity.
      hold(held, -1)
      redis.call('ZREM', LEASES, prev.permit)
      dropPermit(prev.permit, rec)
      redis.call('HINCRBY', ST, 'forfeited', 1)
      held = nil
      if timeout > 0 then
        if waiting == nil then waiting = waitingCount() end
        local e = { id = rid, node = node, lane = prev.lane, loadStr = prev.loadStr, deadline = now + timeout,
          arrival = prev.arrival, seq = forfeitSeq(), state = 'W', tok = tok, tenant = prev.tenant }
        putEntry(e)
        qadd(e)
        waiting = waiting + 1
        return { 'QUEUED', 'taken', prev.loadStr }, true
      end
      prev.state = 'E' -- a try-once: goes now if it fits with nobody waiting, as a fresh one would
    end
    if held then
      -- A retry of an acquire already granted (the answer was lost with its node): the same
      -- permit again, never a second one. Marked, so that the first node's give-back of the
      -- grant it could not deliver does not take it from the caller who has it now. Not when
      -- the same call asks again (its node found the grant stale or its reply lost): no other
      -- caller has it then, and its own give-back, if it ended meanwhile, must return it.
      if not same and string.sub(held, -2) ~= ';R' then
        rec[1] = held .. ';R'
        putPermit(prev.permit, rec)
      end
      return { 'GRANTED', prev.permit, prev.grantedAt - prev.arrival, now, cfg.lease, 'again', prev.loadStr,
        freshLeft(prev) }, false
    elseif prev.state == 'W' and timeout == 0 then
      -- A try-once retry of a waiting id is answered now: the waiter leaves the line (a fresh
      -- try-once would not wait either), the caller of the one it took over hears so.
      waiting = nil
      qrem(prev)
      finish(prev, 'E')
      redis.call('HINCRBY', ST, 'timedout', 1)
      if prev.node ~= node then
        redis.call('PUBLISH', 'sluice:node:' .. prev.node,
          table.concat({ 'E', rname, rid, 'cancelled', prev.tok or '' }, '\t'))
      end
      local a, f = pauseParts()
      return { 'TIMEOUT', a, f }, true
    elseif prev.state == 'W' then
      -- A retry (failover, or a caller that lost its answer): it takes the waiter over in its
      -- place in line, on whichever node it came to. The call it took over hears so: a retry
      -- that arrives late (held up in the network) takes the line from a newer call, whose
      -- client must hear it to take it back, and it must not wait on for nothing.
      if prev.node ~= node then
        redis.call('PUBLISH', 'sluice:node:' .. prev.node,
          table.concat({ 'E', rname, rid, 'taken', prev.tok or '' }, '\t'))
      end
      prev.node = node
      prev.deadline = now + timeout
      prev.tok = tok
      putEntry(prev)
      return { 'QUEUED', 'taken', prev.loadStr }, true
    elseif prev.state == 'R' then
      local ended = tonumber(redis.call('ZSCORE', DONE, rid) or '')
      if ended and now - ended < DONE_KEEP then return { 'USED', now - ended }, false end
    elseif prev.state == 'L' then
      seq = prev.seq -- its node was lost: back in line at its old place
    end
    -- Free again: a new acquire under the old name, no longer one to forget on time.
    redis.call('ZREM', DONE, rid)
  end
  if waiting == nil then waiting = waitingCount() end
  local fits = waiting == 0 and waitFor(load)
  if fits and fits ~= NEVER then fits = math.max(fits, capWaitFor(tenant, load)) end
  if fits == 0 then
    local pid = take(load, loadStr, rid, tenant)
    local e = { id = rid, node = node, lane = lane, loadStr = loadStr, deadline = now, arrival = now,
      seq = 0, permit = pid, grantedAt = now, tok = tok, tenant = tenant }
    finish(e, 'G')
    return { 'GRANTED', pid, 0, now, cfg.lease, freshFor(loadStr) }, false
  end
  if timeout == 0 then
    redis.call('HINCRBY', ST, 'timedout', 1)
    local a, f = pauseParts()
    return { 'TIMEOUT', a, f }, false
  end
  if waiting >= cfg.maxw then
    redis.call('HINCRBY', ST, 'rej:waiting_room_full', 1)
    -- Retry hint: time for the queued load to drain at the rate.
    local est = 0
    for _, d in ipairs(cfg.dl) do
      local deficit = tonumber(redis.call('HGET', ST, 'q:' .. d) or '0') - st.lvl[d]
      if deficit > 0 then est = math.max(est, math.ceil(deficit / cfg.rate[d])) end
    end
    local p = pausedFor()
    if p == NEVER then est = 60000000 else est = math.max(est, p) end
    return { 'FULL', waiting, est }, false
  end
  if seq == nil then seq = redis.call('HINCRBY', ST, 'seq', 1) end
  local e = { id = rid, node = node, lane = lane, loadStr = loadStr, deadline = now + timeout,
    arrival = now, seq = seq, state = 'W', tok = tok, tenant = tenant }
  putEntry(e)
  qadd(e)
  waiting = waiting + 1
  return { 'QUEUED' }, true
end

-- One release, after open(). The caller drains afterwards.
-- mode: plain, settle, unused (the holder's), or giveback (a grant that never reached its
-- caller: its request id is free again, and a permit a retry took meanwhile is kept).
-- Whether a limit restored after a data loss still adopts its holders' permits ('renew'): for
-- one lease after the restore.
local function adopting()
  local restored = tonumber(redis.call('HGET', ST, 'restored') or '')
  return restored ~= nil and now - restored <= cfg.lease, restored
end

local function releaseOne(pid, mode, actualStr)
  local rec = permitOf(pid)
  local loadStr = rec and rec[1]
  if not loadStr then
    -- Released before its holder's renew adopted it: a renew still on its way must not adopt it
    -- then, to hold a slot for nobody. Remembered as long as ended request ids ('#' is not a
    -- request id's character).
    if adopting() then redis.call('ZADD', DONE, now, '#' .. pid) end
    return { 'UNKNOWN' }
  end
  if loadStr == '' then
    -- Adopted after a data loss ('renew'): its slot comes back; what it charged went with the data.
    -- A renew sent before this release may still arrive: it must not adopt the permit again.
    redis.call('ZREM', LEASES, pid)
    redis.call('HDEL', PL, pid)
    if adopting() then redis.call('ZADD', DONE, now, '#' .. pid) end
    return { 'OK' }
  end
  if string.sub(loadStr, -2) == ';R' then
    if mode == 'giveback' then
      -- A give-back from the node that lost this grant's first answer: the caller got it
      -- through another node and holds it.
      return { 'KEPT' }
    end
    loadStr = string.sub(loadStr, 1, -3)
  end
  local g = tonumber(rec[2] or '')
  local rid = rec[3]
  local tenant = rec[4] or DEFAULT
  local fairWeight = tonumber(rec[5] or '')
  hold(loadStr, -1)
  redis.call('ZREM', LEASES, pid)
  dropPermit(pid, rec)
  if mode == 'giveback' then redis.call('HINCRBY', ST, 'givenback', 1) end
  if rid then
    if mode == 'giveback' then
      local e = getEntry(rid)
      if e and e.state == 'G' then finish(e, 'E') end
    else
      usedUp(rid, now)
    end
  end
  local granted = parseLoad(loadStr)
  if mode == 'unused' or mode == 'giveback' then
    settleTenant(tenant, fairWeight, granted, {})
    for d, v in pairs(granted) do
      if cfg.burst[d] then refund(d, g, v) end
    end
  elseif mode == 'settle' then
    local used = {}
    for d, v in pairs(granted) do used[d] = v end
    for d, v in pairs(parseLoad(actualStr)) do
      if cfg.burst[d] then used[d] = v end
    end
    settleTenant(tenant, fairWeight, granted, used)
    for d, v in pairs(parseLoad(actualStr)) do
      if cfg.burst[d] then
        local over = (granted[d] or 0) - v
        if over > 0 then
          refund(d, g, over)
        elseif over < 0 then
          observe(d) -- a charge lowers the level, like a grant
          local charged = math.max(-cfg.amount[d], st.lvl[d] + over)
          addUsed(d, st.lvl[d] - charged)
          st.lvl[d] = charged
        end
      end
    end
  end
  return { 'OK' }
end

if op == 'acquire' then
  -- 7 version, 8 request id, 9 lane (1-3), 10 load, 11 timeout us, 12 attempt (optional),
  -- 13 the permit this call found stale and held back (optional), 14 tenant (optional)
  local err = open(ARGV[7])
  if err then return err end
  trimDone()
  local reply, changed = acquireOne(ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10], tonumber(ARGV[11]),
    ARGV[12] or '', ARGV[13] or '', ARGV[14] or '')
  if changed then return drainAndSave(reply) end
  saveState()
  return reply

elseif op == 'batch' then
  -- Acquires and releases of one node on one resource, run in the order given, then one
  -- drain: the same outcome as calling them one after another at the same instant (a release
  -- cannot let a later acquire pass a waiter: that acquire sees the waiter and queues behind).
  -- 7: the ops, one per line, fields separated by single spaces (empty fields allowed):
  -- 'a' version request-id lane load timeout-us attempt stale-permit tenant | 'r' permit mode usage
  -- Reply: 'BATCH', one reply per op, then the drain tail (now, wake, lease, then request id, permit, waited, freshness per grant).
  local err = open(nil)
  if err then return err end
  trimDone()
  local replies = { 'BATCH' }
  for line in string.gmatch(ARGV[7] or '', '[^\n]+') do
    local f, n = {}, 0
    for part in string.gmatch(line .. ' ', '([^ ]*) ') do
      n = n + 1
      f[n] = part
    end
    if f[1] == 'a' and n == 9 then
      replies[#replies + 1] = acquireOne(f[2], f[3], tonumber(f[4]), f[5], tonumber(f[6]), f[7], f[8], f[9])
    elseif f[1] == 'r' and n == 4 then
      replies[#replies + 1] = releaseOne(f[2], f[3], f[4])
    else
      return redis.error_reply('unknown batch op ' .. string.sub(line, 1, 40))
    end
  end
  return drainAndSave(replies)

elseif op == 'leave' then
  -- 7 request id, 8 outcome (timedout|cancelled), 9 '1' if only the owning node may remove it,
  -- 10 with '1': the attempt that leaves (optional); another attempt's entry is not its own
  local err = open(nil)
  if err then return err end
  local e = getEntry(ARGV[7])
  if e == nil then saveState(); return { 'UNKNOWN' } end
  if ARGV[9] == '1' and (e.node ~= node or (ARGV[10] and ARGV[10] ~= '' and e.tok and e.tok ~= ARGV[10])) then
    -- Taken over by a retry, here or on another node: nothing of this call is left to end.
    saveState()
    return { 'MOVED', e.node }
  end
  if ARGV[8] == 'timedout' and e.state == 'W' then
    -- A deadline is inclusive: what can be granted at its instant is, to this waiter too.
    local wake = drain()
    e = getEntry(ARGV[7])
    if e.state == 'G' then
      saveState()
      return tail({ 'SERVED', e.node }, wake)
    end
  end
  if e.state == 'G' then
    saveState()
    return { 'GRANTED', e.permit, e.grantedAt - e.arrival, now, cfg.lease, e.node, freshLeft(e) }
  end
  if e.state ~= 'W' then saveState(); return { 'ENDED' } end
  qrem(e)
  finish(e, 'E')
  redis.call('HINCRBY', ST, ARGV[8], 1)
  -- The pause as the waiter left, for its timeout's message (on whichever node hears of it).
  local a, f = pauseParts()
  if e.node ~= node then
    redis.call('PUBLISH', 'sluice:node:' .. e.node,
      table.concat({ 'E', rname, e.id, ARGV[8], e.tok or '', a, f }, '\t'))
  end
  return drainAndSave({ 'LEFT', e.node, a, f })

elseif op == 'estimate' then
  -- 7 load, 8 lane (1-3), 9 tenant. When an acquire made now would be granted, in us from now
  -- (-1: only an event can help). The same estimate as ResourceState.estimate, step for step.
  local err = open(nil)
  if err then return err end
  local load = parseLoad(ARGV[7])
  local lane = tonumber(ARGV[8])
  local t = ARGV[9]
  if t == nil or t == '' then t = DEFAULT end
  local p = pausedFor()
  if p == NEVER then saveState(); return { 'EST', -1 } end
  local ahead = {}
  for _, d in ipairs(cfg.dl) do
    local a = 0
    for l = 1, lane do a = a + tonumber(redis.call('HGET', ST, 'ql:' .. t .. ':' .. l .. ':' .. d) or '0') end
    ahead[d] = a
  end
  local share = 1
  if st.mt and redis.call('ZSCORE', TA, t) then
    local w = effWeight(t)
    local others = st.aw - weightOf(t)
    if others > 0 then share = w / (others + w) end
  end
  local wait = 0
  for _, d in ipairs(cfg.dl) do
    local deficit = ahead[d] + (load[d] or 0) - st.lvl[d] * share
    if deficit > 0 then wait = math.max(wait, deficit / (cfg.rate[d] * share)) end
  end
  local rates = cfg.tc[t]
  if rates then
    local c = st.cap[t]
    for i, r in ipairs(rates) do
      local lvl = r.burst
      if c then lvl = c.lv[i] end
      local deficit = ahead[r.d] + (load[r.d] or 0) - lvl
      if deficit > 0 then wait = math.max(wait, deficit / r.rate) end
    end
  end
  saveState()
  return { 'EST', math.max(p, math.max(0, math.ceil(wait - 1e-6))) }

elseif op == 'release' then
  -- 7 permit, 8 mode (plain|settle|unused), 9 actual usage
  local err = open(nil)
  if err then return err end
  return drainAndSave(releaseOne(ARGV[7], ARGV[8], ARGV[9]))

elseif op == 'renew' then
  -- 7.. permit ids
  local err = open(nil)
  if err then return err end
  local expired = {}
  -- Right after Redis lost its data and this limit was restored, a live holder's renew brings
  -- its permit back (a permit id is its grant time, '.', a sequence): it holds a slot again
  -- and is released as usual, but its load is unknown, so a settle of it charges nothing.
  local open, restored = adopting()
  for i = 7, #ARGV do
    local pid = ARGV[i]
    if redis.call('ZSCORE', LEASES, pid) then
      redis.call('ZADD', LEASES, 'XX', now + cfg.lease, pid)
    elseif open and (tonumber(string.match(pid, '^(%d+)%.%d+$') or '') or math.huge) < restored
        and not redis.call('ZSCORE', DONE, '#' .. pid) then
      redis.call('ZADD', LEASES, now + cfg.lease, pid)
      redis.call('HSET', PL, pid, '')
    else
      expired[#expired + 1] = pid
    end
  end
  local wake = drain()
  saveState()
  local out = tail({ 'OK' }, wake)
  out[#out + 1] = '--'
  for _, id in ipairs(expired) do out[#out + 1] = id end
  return out

elseif op == 'pump' then
  local err = open(nil)
  if err then return err end
  trimDone()
  return drainAndSave({ 'OK', waitingCount() })

elseif op == 'report' then
  -- 7 throttled (0|1), 8 retry-after us, 9 remaining counters
  local err = open(nil)
  if err then return err end
  if ARGV[7] == '1' then
    redis.call('HINCRBY', ST, 'throttled', 1)
    redis.call('HSET', ST, 'lastthr', now)
    for _, d in ipairs(cfg.dl) do st.lvl[d] = math.min(st.lvl[d], 0) end
    forgetRefunds()
    local untilT = now + tonumber(ARGV[8])
    if untilT > st.fpause then st.fpause = untilT end
  end
  for d, v in pairs(parseLoad(ARGV[9])) do
    if cfg.burst[d] and v < st.lvl[d] then
      st.lvl[d] = v
      forgetRefunds()
    end
  end
  local wake = drain()
  local left = pausedFor()
  saveState()
  return tail({ 'OK', left }, wake)

elseif op == 'pause' then
  -- 7 microseconds, or -1 until resumed
  local err = open(nil)
  if err then return err end
  local us = tonumber(ARGV[7])
  if us < 0 then st.apause = -1 else st.apause = now + us end
  local wake = drain()
  local left = pausedFor()
  saveState()
  return tail({ 'OK', left }, wake)

elseif op == 'resume' then
  local err = open(nil)
  if err then return err end
  st.apause, st.fpause = 0, 0
  return drainAndSave({ 'OK' })

elseif op == 'stats' then
  local err = open(nil)
  if err then return err end
  local left = pausedFor()
  local pa, pf = pauseParts()
  saveState()
  local lanes = { 0, 0, 0 }
  for _, t in ipairs(waitingTenants()) do
    for l = 1, 3 do lanes[l] = lanes[l] + redis.call('ZCARD', qkey(t, l)) end
  end
  local out = { 'OK', cfg.ver, redis.call('ZCARD', LEASES), lanes[1], lanes[2], lanes[3], left }
  local s = redis.call('HGETALL', ST)
  local kv = {}
  for i = 1, #s, 2 do kv[s[i]] = s[i + 1] end
  for _, k in ipairs({ 'granted', 'timedout', 'cancelled', 'throttled', 'givenback', 'forfeited', 'expired' }) do
    out[#out + 1] = tonumber(kv[k] or '0')
  end
  for _, d in ipairs(cfg.dl) do
    out[#out + 1] = d
    out[#out + 1] = fmt(st.lvl[d])
  end
  for _, d in ipairs(cfg.hl) do
    out[#out + 1] = d
    out[#out + 1] = fmt(cfg.hcap[d] - heldOf(d))
  end
  out[#out + 1] = '--'
  for k, v in pairs(kv) do
    if string.sub(k, 1, 4) == 'rej:' then
      out[#out + 1] = string.sub(k, 5)
      out[#out + 1] = v
    elseif string.sub(k, 1, 2) == 'u:' or string.sub(k, 1, 3) == 'tu:' then
      out[#out + 1] = k
      out[#out + 1] = v
    end
  end
  -- Who holds the pause, and how long ago the last throttle report came (microseconds).
  out[#out + 1] = 'p:admin'
  out[#out + 1] = pa
  out[#out + 1] = 'p:upstream'
  out[#out + 1] = pf
  if kv.lastthr then
    out[#out + 1] = 't:ago'
    out[#out + 1] = math.max(0, now - tonumber(kv.lastthr))
  end
  if st.mt then
    local byKey = {}
    for _, t in ipairs(waitingTenants()) do
      local n = tenantWaiting(t)
      if n > 0 then byKey[statsKey(t)] = (byKey[statsKey(t)] or 0) + n end
    end
    for k, n in pairs(byKey) do
      out[#out + 1] = 'tq:' .. k
      out[#out + 1] = n
    end
  end
  return out

elseif op == 'setlimit' or op == 'settpl' then
  -- setlimit: 7 '1' to write only if absent (restore after data loss), 8.. field/value pairs
  -- of cfg. settpl, a name's bucket from its template (made, or brought to the template's
  -- version): 7 pattern, 8 version, 9 the template's creation (us), 10 idle grace (us), 11..
  -- fields; a limit of the name's own wins ('OWN').
  local tpl = op == 'settpl'
  local first = 8
  local was = redis.call('HMGET', CFG, 'tpl', 'ver', 'tcr')
  if tpl then
    first = 11
    if redis.call('EXISTS', CFG) == 1 and not was[1] then return { 'OWN' } end
    if was[1] == ARGV[7] and was[2] == ARGV[8] then return { 'SAME' } end
    if was[1] == ARGV[7] and was[3] ~= ARGV[9] then
      -- The template was deleted and set again since: a new bucket, as on the memory store.
      redis.call('DEL', CFG)
      was = { false, false, false }
    end
  elseif ARGV[7] == '1' and redis.call('EXISTS', CFG) == 1 then
    return { 'EXISTS' }
  end
  local fresh = redis.call('EXISTS', CFG) == 0
  -- A limit set on a name whose bucket a template made is created, and adopts the bucket.
  local created = fresh or (not tpl and was[1] ~= false)
  local oldCfg = loadCfg()
  local oldLvl = {}
  if oldCfg then
    cfg = oldCfg
    st = loadState()
    expireLeases()
    refill()
    oldLvl = st.lvl
  end
  redis.call('DEL', CFG)
  local args = {}
  for i = first, #ARGV do args[#args + 1] = ARGV[i] end
  if tpl then
    for _, x in ipairs({ 'tpl', ARGV[7], 'tcr', ARGV[9], 'tidle', ARGV[10] }) do args[#args + 1] = x end
  end
  redis.call('HSET', CFG, unpack(args))
  cfg = loadCfg()
  -- Kept dimensions keep their level, clipped to the new burst; new ones start empty, so a
  -- limit change never hands out a fresh burst. Created limits start empty too; a template's
  -- bucket as a limit set when the template was would be now: filled since.
  if fresh then redis.call('DEL', ST, LEASES, PL, QS[1], QS[2], QS[3], W, DONE, TA, TI) end
  if tpl and fresh then
    local since = math.max(0, now - tonumber(ARGV[9]))
    for _, d in ipairs(cfg.dl) do oldLvl[d] = math.min(cfg.burst[d], since * cfg.rate[d]) end
  end
  if not tpl and was[1] then
    -- No longer a template's: its keys stay.
    for _, k in ipairs({ CFG, ST, LEASES, PL, W, NODES, DONE, TA, TI }) do redis.call('PERSIST', k) end
  end
  if oldCfg then
    -- Caps follow the new policy: a capped tenant starts its own buckets full again.
    local gone = {}
    for _, k in ipairs(redis.call('HKEYS', ST)) do
      if string.match(k, '^c[lt]:') then gone[#gone + 1] = k end
    end
    if #gone > 0 then redis.call('HDEL', ST, unpack(gone)) end
  end
  st = loadState()
  if oldCfg then
    resetFairIfSpent() -- as the refill above would have (ResourceState.configure)
    if st.mt then
      -- The weights may have changed: their running sum starts again, in name order.
      local names = redis.call('ZRANGE', TA, 0, -1)
      table.sort(names)
      local sum = 0
      for _, t in ipairs(names) do sum = sum + weightOf(t) end
      st.aw = sum
    end
  end
  st.t = now
  for _, d in ipairs(cfg.dl) do st.lvl[d] = math.min(cfg.burst[d], oldLvl[d] or 0) end
  forgetRefunds()
  -- What the live permits hold, counted afresh on the new held dimensions.
  local stale = {}
  for _, k in ipairs(redis.call('HKEYS', ST)) do
    if string.sub(k, 1, 3) == 'hd:' then stale[#stale + 1] = k end
  end
  if #stale > 0 then redis.call('HDEL', ST, unpack(stale)) end
  if #cfg.hl > 0 then
    local pl = redis.call('HGETALL', PL)
    for i = 1, #pl, 2 do
      -- ('#': a field of an older version's permit record, see permitOf)
      if not string.find(pl[i], '#', 1, true) then hold(string.match(pl[i + 1], '^[^\t]*'), 1) end
    end
  end
  if oldCfg then
    for _, d in ipairs(oldCfg.dl) do
      if not cfg.burst[d] then redis.call('HDEL', ST, 'l:' .. d, 'q:' .. d, 'h:' .. d) end
    end
  end
  -- Waiters whose load can no longer fit fail now instead of waiting for ever (the caller's
  -- own in the reply, after '--'; other nodes' on their channel).
  local misfits = {}
  for _, t in ipairs(waitingTenants()) do
  for l = 1, 3 do
    for _, id in ipairs(redis.call('ZRANGE', qkey(t, l), 0, -1)) do
      local e = getEntry(id)
      if e and e.state == 'W' then
        local why = nil
        for d, v in pairs(parseLoad(e.loadStr)) do
          if v > 0 and cfg.hcap[d] then
            if v > cfg.hcap[d] then why = 'load ' .. d .. '=' .. v .. ' is above the new held cap ' .. cfg.hcap[d] end
          elseif v > 0 and not cfg.burst[d] and d ~= 'requests' then
            why = 'load names dimension ' .. d .. ' which the limit no longer has'
          elseif v > 0 and cfg.burst[d] and v > cfg.burst[d] then
            why = 'load ' .. d .. '=' .. v .. ' is above the new burst ' .. cfg.burst[d]
          end
        end
        if why then
          qrem(e)
          finish(e, 'E')
          redis.call('HINCRBY', ST, 'rej:invalid', 1)
          if e.node == node then
            misfits[#misfits + 1] = id
            misfits[#misfits + 1] = why
          else
            redis.call('PUBLISH', 'sluice:node:' .. e.node, table.concat({ 'X', rname, id, why }, '\t'))
          end
        end
      end
    end
  end
  end
  local wake = drain()
  saveState()
  -- A limit restored after Redis lost its data: its holders' leases went with the data. For
  -- one lease from now, a renew of a permit granted before this instant adopts it ('renew').
  if ARGV[7] == '1' then redis.call('HSET', ST, 'restored', fmt(now)) end
  local out = tail({ created and 'CREATED' or 'CHANGED' }, wake)
  out[#out + 1] = '--'
  for _, x in ipairs(misfits) do out[#out + 1] = x end
  return out

elseif op == 'dellimit' then
  if redis.call('EXISTS', CFG) == 0 then return { 'NOTFOUND' } end
  local nodes = {}
  local queues = {}
  for _, t in ipairs(redis.call('ZRANGE', TA, 0, -1)) do
    if t ~= DEFAULT then
      for l = 1, 3 do queues[#queues + 1] = QS[l] .. '|' .. t end
    end
  end
  for l = 1, 3 do queues[#queues + 1] = QS[l] end
  for _, q in ipairs(queues) do
    for _, id in ipairs(redis.call('ZRANGE', q, 0, -1)) do
      local e = getEntry(id)
      -- The calling node ends its own waiters itself (a late message could end a new limit's).
      if e and e.state == 'W' and e.node ~= node and not nodes[e.node] then
        nodes[e.node] = true
        redis.call('PUBLISH', 'sluice:node:' .. e.node, table.concat({ 'D', rname }, '\t'))
      end
    end
  end
  redis.call('DEL', CFG, ST, LEASES, PL, W, NODES, DONE, TA, TI, unpack(queues))
  return { 'OK' }

elseif op == 'getlimit' then
  local raw = redis.call('HGETALL', CFG)
  return raw
end

return redis.error_reply('unknown op ' .. tostring(op))
