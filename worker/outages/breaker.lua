-- A circuit breaker shared by every crmsync process: one hash per API, every transition in
-- this one script, so two workers never both open it, both take the probe, or lose a count.
-- worker/outages/breaker.py says why it is built so.
--
-- KEYS[1]  the breaker hash (worker/state/keys.py, Keys.breaker)
-- KEYS[2]  the set of subjects (accounts) that failed since the last success
--          (Keys.breaker_failing): N failures must be N *different* syncs, so one account
--          whose sync always fails cannot open the breaker for everyone by itself
-- ARGV[1]  operation: admit | success | failure | release | probe_now | state
-- ARGV[2]  now in ms, or "" for the server's clock (the tests pin time with it)
--
-- admit (ARGV[3] probe lease ms) -> {decision, state, probe_at, token}
--   decision "go": closed, go ahead; "probe": open and a probe is due: the caller is the one
--   probe (state half_open until it reports or its lease runs out); "wait": open, or another
--   probe is out.
-- success (ARGV[3] 1 when the caller was the probe) -> {"closed"} when this closed it, else
--   {"ok"}. Only a probe closes an open breaker: a call sent before it opened proves nothing
--   about now (and a read that works says nothing about writes that fail).
-- failure (ARGV[3] threshold, ARGV[4] probe after ms, ARGV[5] reason, ARGV[6] 1 when the
--   caller was the probe, ARGV[7] 1 to open at once (a quota), ARGV[8] the subject, or "" to
--   count every failure) -> {"opened"|"reopened"|"counted"|"open", failures}
-- release (ARGV[3] the probe's token from admit) -> {} a probe that
--   made no call gives its turn back, so the next admit may probe at once.
-- probe_now -> {} an operator's retry-now: an open breaker's next admit is a probe.
-- state -> {now, field, value, ...} every stored field.

local key = KEYS[1]
local op = ARGV[1]

local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

if op == 'state' then
  local reply = {tostring(now)}
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields do
    reply[#reply + 1] = fields[i]
  end
  return reply
end

local f = redis.call('HMGET', key, 'state', 'failures', 'probe_at', 'probe_until')
local state = f[1] or 'closed'
local failures = tonumber(f[2]) or 0
local probe_at = tonumber(f[3]) or 0
local probe_until = tonumber(f[4]) or 0

local function open(probe_after)
  redis.call('HSET', key, 'state', 'open', 'probe_at', tostring(now + probe_after))
  redis.call('HDEL', key, 'probe_until')
end

if op == 'admit' then
  if state == 'closed' then
    return {'go', state, tostring(probe_at)}
  end
  if probe_until > now or now < probe_at then
    return {'wait', state, tostring(probe_at)}
  end
  local token = tostring(now + tonumber(ARGV[3]))
  redis.call('HSET', key, 'state', 'half_open', 'probe_until', token)
  redis.call('HINCRBY', key, 'probes', 1)
  return {'probe', 'half_open', tostring(probe_at), token}
end

if op == 'success' then
  if state == 'closed' then
    if failures > 0 then
      redis.call('HSET', key, 'failures', '0')
      redis.call('DEL', KEYS[2])
    end
    return {'ok'}
  end
  if ARGV[3] ~= '1' then
    return {'ok'}
  end
  redis.call('HSET', key, 'state', 'closed', 'since', tostring(now), 'closed_at', tostring(now),
    'failures', '0')
  redis.call('HDEL', key, 'probe_until')
  redis.call('DEL', KEYS[2])
  return {'closed'}
end

if op == 'failure' then
  local threshold = tonumber(ARGV[3])
  local probe_after = tonumber(ARGV[4])
  local probe = ARGV[6] == '1'
  local force = ARGV[7] == '1'
  redis.call('HSET', key, 'reason', ARGV[5], 'failed_at', tostring(now))
  if state == 'closed' then
    if ARGV[8] ~= '' then
      redis.call('SADD', KEYS[2], ARGV[8])
      failures = redis.call('SCARD', KEYS[2])
      redis.call('HSET', key, 'failures', tostring(failures))
    else
      failures = redis.call('HINCRBY', key, 'failures', 1)
    end
    if failures >= threshold or force then
      redis.call('DEL', KEYS[2])
      redis.call('HSET', key, 'since', tostring(now), 'opened_at', tostring(now))
      redis.call('HINCRBY', key, 'opens', 1)
      open(probe_after)
      return {'opened', failures}
    end
    return {'counted', failures}
  end
  if probe or force then
    -- The probe failed (or a quota says so): stay open, the next probe after a pause.
    open(probe_after)
    return {'reopened', failures}
  end
  return {'open', failures}
end

if op == 'release' then
  if state == 'half_open' and f[4] == ARGV[3] then
    redis.call('HSET', key, 'state', 'open')
    redis.call('HDEL', key, 'probe_until')
  end
  return {}
end

if op == 'probe_now' then
  if state ~= 'closed' then
    redis.call('HSET', key, 'probe_at', tostring(now))
    redis.call('HDEL', key, 'probe_until')
  end
  return {}
end

return redis.error_reply('unknown breaker operation: ' .. tostring(op))
