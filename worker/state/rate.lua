-- The Metronome rate governor: one GCRA limiter shared by every crmsync process, whose rate
-- adapts to Metronome's 429 answers. worker/metronome/governor.py says why it is built so.
--
-- GCRA keeps one number per limit, the "theoretical arrival time" (tat) of the next request:
-- a request may go at tat - burst_ms, and pushes tat on by one interval (1000 / rate ms). A
-- caller here *reserves* its slot and sleeps until it, so one round trip is one request.
-- Everything runs on the server's clock (TIME): processes on different hosts agree on "now".
--
-- KEYS[1]  the governor hash (worker/state/keys.py, Keys.governor)
-- ARGV[1]  operation: "acquire", "refused" or "state"
-- ARGV[2]  now in ms, or "" for the server's clock (the maths tests pin time with it)
-- ARGV[3]  max_rps     the ceiling (METRONOME_MAX_RPS)
-- ARGV[4]  min_rps     the floor that 429s cannot push the rate below
-- ARGV[5]  increase    req/s the rate climbs back per second after a decrease
-- ARGV[6]  burst_ms    after a quiet spell, this many ms worth of requests may go at once
-- ARGV[7]  horizon_ms  the furthest ahead a slot is reserved
-- ARGV[8]  ttl_ms      the hash's lifetime after its last write
--
-- acquire -> {granted, wait_ms, rate, hold_until_ms, slot_ms, now_ms, cut_ms}
--   granted 1: the slot at slot_ms (server time) is the caller's: sleep wait_ms, then send.
--   granted 0: the next free slot is beyond the horizon; nothing reserved, ask again later.
--   cut_ms: when the rate was last decreased (0: never).
-- refused (a 429 came back): ARGV[9] limit type ("client", "customer" or "unknown"),
--   ARGV[10] retry_after_ms (-1: the answer named none), ARGV[11] hold_ms to use then,
--   ARGV[12] decrease factor, ARGV[13] when the refused request's slot was reserved (ms)
--   -> {rate, hold_until_ms, cut_ms}
-- state -> {rate, hold_until_ms, now_ms, field, value, ...} (every stored field), or {} when
--   no request was ever governed.

local key = KEYS[1]
local op = ARGV[1]

-- Numbers as text with microsecond precision: tostring's %.14g keeps only 0.1 ms of an
-- epoch-milliseconds value, too coarse for a 0.1 ms interval (10,000 req/s).
local function num(x)
  return string.format('%.3f', x)
end

local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- The rate now: after a decrease at `cut` down to `base`, it climbs back linearly (additive
-- increase) up to the ceiling; never below the floor.
local function rate_at(max_rps, min_rps, increase, base, cut)
  if base == nil or cut == nil then
    return max_rps
  end
  local rate = base + increase * math.max(0, now - cut) / 1000
  if rate > max_rps then rate = max_rps end
  if rate < min_rps then rate = min_rps end
  return rate
end

if op == 'state' then
  local fields = redis.call('HGETALL', key)
  if #fields == 0 then
    return {}
  end
  local h = {}
  for i = 1, #fields, 2 do
    h[fields[i]] = fields[i + 1]
  end
  local max_rps = tonumber(h['max'])
  if not max_rps then
    return {}
  end
  local rate = rate_at(max_rps, tonumber(h['min']) or max_rps, tonumber(h['increase']) or 0,
    tonumber(h['base']), tonumber(h['cut']))
  local reply = {num(rate), h['hold'] or '0', num(now)}
  for i = 1, #fields do
    reply[#reply + 1] = fields[i]
  end
  return reply
end

local max_rps = tonumber(ARGV[3])
local min_rps = tonumber(ARGV[4])
local increase = tonumber(ARGV[5])
local burst = tonumber(ARGV[6])
local horizon = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])

local f = redis.call('HMGET', key, 'tat', 'base', 'cut', 'hold')
local tat = tonumber(f[1]) or 0
local base = tonumber(f[2])
local cut = tonumber(f[3])
local hold = tonumber(f[4]) or 0
local rate = rate_at(max_rps, min_rps, increase, base, cut)

-- Written with every operation, so `state` (crmsync status, metrics) can compute the rate.
redis.call('HSET', key, 'max', num(max_rps), 'min', num(min_rps),
  'increase', num(increase))

if op == 'acquire' then
  if tat < now then tat = now end
  -- Nobody sends during a hold, and the first slots after it are paced, not a burst: a
  -- burst right after the API asked us to wait is what it just refused.
  if hold > now and tat < hold + burst then tat = hold + burst end
  local slot = tat - burst
  if slot < now then slot = now end
  local granted = 0
  if slot - now <= horizon then
    granted = 1
    redis.call('HSET', key, 'tat', num(tat + 1000 / rate))
  end
  redis.call('PEXPIRE', key, ttl)
  return {granted, num(slot - now), num(rate), num(hold), num(slot), num(now), num(cut or 0)}
end

if op == 'refused' then
  local kind = ARGV[9]
  redis.call('HINCRBY', key, 'refused:' .. kind, 1)
  redis.call('HSET', key, 'last_refused', num(now), 'last_type', kind)
  -- A "customer" 429 is one customer's limit: its caller waits, the shared rate stays.
  if kind ~= 'customer' then
    local wait = tonumber(ARGV[10])
    if wait < 0 then wait = tonumber(ARGV[11]) end
    if now + wait > hold then
      hold = now + wait
      redis.call('HSET', key, 'hold', num(hold))
    end
    -- Decrease once per round trip: a 429 for a request reserved before the last decrease
    -- was paced at the old rate and says nothing about the new one.
    local reserved = tonumber(ARGV[13])
    if cut == nil or reserved > cut then
      local factor = tonumber(ARGV[12])
      local lowered = rate * factor
      if lowered < min_rps then lowered = min_rps end
      base = lowered
      cut = now
      redis.call('HSET', key, 'base', num(base), 'cut', num(cut))
      rate = rate_at(max_rps, min_rps, increase, base, cut)
      -- Every slot reserved before now was paced at the old rate, and its holder gives it
      -- back (governor.py): those slots are free again. Left reserved, each decrease wasted
      -- up to a horizon of the budget (half of it with a 429 every second or so).
      if tat > now then
        redis.call('HSET', key, 'tat', num(now))
      end
    end
  end
  redis.call('PEXPIRE', key, ttl)
  return {num(rate), num(hold), num(cut or 0)}
end

return redis.error_reply('unknown governor operation: ' .. tostring(op))
