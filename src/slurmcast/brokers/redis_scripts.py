"""The Lua scripts of the Redis broker, and the layout of its keys.

Everything that must change together runs in one script, so Redis applies
it atomically: a publication's offset, its history entry, its channel state
change and its delivery to every instance (``PUBLISH``) can never be seen
half done, and a poller that lost its lease can publish nothing (fencing).

Keys, under the configured prefix ``P``:

* ``P:ch:<channel>``  hash ``epoch``, ``top``: the channel's position, created
  by the channel's first publication (or a seed), never by a read;
* ``P:gen``           hash ``id``, ``n``: the epoch the next channel to be born
  takes (``<id>-<n>``), which every channel without messages reports;
* ``P:h:<channel>``   stream of the channel's history, entry id ``0-<offset>``
  (so ``XRANGE`` by offset is exact), fields ``d`` (the message) and ``t``
  (milliseconds, for the history's maximum age), capped with ``MAXLEN``;
* ``P:s:<channel>``   hash item key -> JSON: the channel's state (snapshots);
* ``P:checkpoint``    hash: the poller's diff baseline, part by part;
* ``P:lease``         the polling lease (value: the holder's fencing token);
* ``P:presence:<id>`` each instance's client counts, with a TTL;
* ``P:pub``           the one Pub/Sub channel every instance listens on.

A message on ``P:pub`` is ``offset \\n epoch \\n nonce \\n header \\n payload``
where ``header`` is ``[channel, owner, tags]`` as JSON and offset 0 means a
message to every client, outside any stream. The stored entry's ``d`` is
``header \\n payload``. ``R \\n epoch \\n \\n channel`` says that a poller
replaced the channel's state wholesale (a seed) under a new epoch.

Reading a channel nobody published on stores nothing: anyone may subscribe
to any ``user:<name>``, and keys per name read would grow without bound. Such
a channel reports position ``(0, <id>-<n>)``; its first publication gives it
exactly that epoch (so a subscriber from before recovers), and ``n`` moves on,
so that no two births ever share an epoch: a channel lost and born again
never looks like its former self. ``id`` is new whenever ``P:gen`` is gone
(Redis restarted empty), so epochs of channels born since are new too.

If a channel's ``epoch`` is missing (Redis restarted without persistence,
keys evicted) the next publication starts a new epoch and drops what is left
of the channel's history and state: clients holding the old epoch then learn
that they cannot recover.
"""

from __future__ import annotations

#: Shared by the scripts: the epoch of channels not born yet, and births.
_ENSURE = """
local prefix = ARGV[1]
local function unborn(candidate)
  local gen = prefix .. 'gen'
  local id = redis.call('HGET', gen, 'id')
  if not id then
    id = candidate
    redis.call('HSET', gen, 'id', id, 'n', 0)
  end
  return id .. '-' .. redis.call('HGET', gen, 'n')
end
local function ensure(channel, candidate)
  local meta = prefix .. 'ch:' .. channel
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = unborn(candidate)
    redis.call('HINCRBY', prefix .. 'gen', 'n', 1)
    redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
    redis.call('DEL', prefix .. 'h:' .. channel, prefix .. 's:' .. channel)
  end
  return meta, epoch
end
"""

#: ARGV: prefix, fence token ('' = not fenced), candidate epoch, now (ms),
#: nonce prefix; then n checkpoint parts (name, value); then n seeds
#: (channel, n items, (key, json)...); then n publications (stream flag,
#: channel, maxlen, entry, state op '' | 's' | 'd', state key, state json).
#: Returns {offset, epoch} per publication ({0, ''} for messages to everyone).
COMMIT = (
    _ENSURE
    + """
local lease = prefix .. 'lease'
if ARGV[2] ~= '' and redis.call('GET', lease) ~= ARGV[2] then
  return redis.error_reply('FENCED the polling lease is held by another instance')
end
local candidate, now, nonce = ARGV[3], ARGV[4], ARGV[5]
local pub = prefix .. 'pub'
local i = 6
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', prefix .. 'checkpoint', ARGV[i], ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  -- A seed replaces the state without messages: a new epoch, so that every
  -- subscriber (told by the 'R' message) resyncs from the new state.
  local channel, count = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local state = prefix .. 's:' .. channel
  redis.call('HSET', prefix .. 'ch:' .. channel, 'epoch', candidate, 'top', 0)
  redis.call('DEL', prefix .. 'h:' .. channel, state)
  for _ = 1, count do
    redis.call('HSET', state, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  redis.call('PUBLISH', pub, 'R\\n' .. candidate .. '\\n\\n' .. channel)
end
n = tonumber(ARGV[i]); i = i + 1
local out = {}
for k = 1, n do
  local streamed, channel, maxlen, entry = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local op, key, value = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  i = i + 7
  if streamed == '0' then
    redis.call('PUBLISH', pub, '0\\n\\n' .. nonce .. k .. '\\n' .. entry)
    out[k] = {0, ''}
  else
    local meta, epoch = ensure(channel, candidate)
    local offset = redis.call('HINCRBY', meta, 'top', 1)
    local history = prefix .. 'h:' .. channel
    if maxlen > 0 then
      redis.call('XADD', history, 'MAXLEN', maxlen, '0-' .. offset, 'd', entry, 't', now)
    else
      redis.call('DEL', history)
    end
    if op == 's' then
      redis.call('HSET', prefix .. 's:' .. channel, key, value)
    elseif op == 'd' then
      redis.call('HDEL', prefix .. 's:' .. channel, key)
    end
    redis.call('PUBLISH', pub, offset .. '\\n' .. epoch .. '\\n' .. nonce .. k .. '\\n' .. entry)
    out[k] = {offset, epoch}
  end
end
return out
"""
)

#: ARGV: prefix, channel, candidate epoch, mode ('position' | 'snapshot' |
#: 'since' | 'latest'), since offset, limit, now (ms), max age (ms, 0 = none).
#: Returns {epoch, top} for 'position'; {epoch, top, state} for 'snapshot';
#: {epoch, top, oldest id, offsets, lengths, data} for history (expired
#: entries, the stream's oldest ones, are deleted first): the entries' offsets
#: and data lengths joined with commas, their data concatenated. Three strings
#: instead of five values per entry, because parsing the reply was what a
#: thousand clients recovering at once cost the server most. A channel without a position
#: (never published on, or lost) stores nothing and reads as empty.
READ = (
    _ENSURE
    + """
local channel = ARGV[2]
local mode = ARGV[4]
local meta = prefix .. 'ch:' .. channel
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  -- What is left of a lost channel must not be read as the next one's.
  redis.call('DEL', prefix .. 'h:' .. channel, prefix .. 's:' .. channel)
  epoch = unborn(ARGV[3])
  if mode == 'position' then return {epoch, 0} end
  if mode == 'snapshot' then return {epoch, 0, {}} end
  return {epoch, 0, '0-1', '', '', ''}
end
local top = redis.call('HGET', meta, 'top')
if mode == 'position' then
  return {epoch, top}
end
if mode == 'snapshot' then
  return {epoch, top, redis.call('HGETALL', prefix .. 's:' .. channel)}
end
local history = prefix .. 'h:' .. channel
local max_age = tonumber(ARGV[8])
if max_age > 0 then
  local cutoff = tonumber(ARGV[7]) - max_age
  while true do
    local batch = redis.call('XRANGE', history, '-', '+', 'COUNT', 64)
    local expired = {}
    for _, item in ipairs(batch) do
      if tonumber(item[2][4]) >= cutoff then break end
      expired[#expired + 1] = item[1]
    end
    if #expired > 0 then redis.call('XDEL', history, unpack(expired)) end
    if #expired < 64 then break end
  end
end
local first = redis.call('XRANGE', history, '-', '+', 'COUNT', 1)
-- '%d', not '..': Lua writes numbers from 1e14 on as '1e+14', no stream id.
local oldest = '0-' .. string.format('%d', tonumber(top) + 1)
if #first > 0 then oldest = first[1][1] end
local limit = tonumber(ARGV[6])
local entries = {}
if limit > 0 then
  if mode == 'since' then
    local after = '0-' .. string.format('%d', tonumber(ARGV[5]) + 1)
    entries = redis.call('XRANGE', history, after, '+', 'COUNT', limit)
  else
    entries = redis.call('XREVRANGE', history, '+', '-', 'COUNT', limit)
  end
end
local offsets, lengths, data = {}, {}, {}
for i, item in ipairs(entries) do
  offsets[i] = string.sub(item[1], 3)  -- ids are '0-<offset>'
  local fields = item[2]
  for j = 1, #fields, 2 do
    if fields[j] == 'd' then data[i] = fields[j + 1] end
  end
  lengths[i] = #data[i]
end
return {epoch, top, oldest, table.concat(offsets, ','), table.concat(lengths, ','),
  table.concat(data)}
"""
)

#: KEYS: lease. ARGV: token, ttl (ms). Extends the lease only for its holder.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

#: KEYS: lease. ARGV: token. Gives the lease up only if this holder has it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
