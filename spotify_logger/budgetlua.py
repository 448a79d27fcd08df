"""The request budget's Redis side: one Lua script that checks and counts a call atomically.

Two processes running it at once are serialised by Redis, so they can never both take the last
call. It also refuses while the app's shared cooldown holds and applies the learned limit, so
every process obeys both at no extra round trip.
"""

from __future__ import annotations

# KEYS: calls, endpoints, cooldown, learned. ARGV: now, bucket, first bucket, configured limit
# (0: only note the endpoint), reserve, endpoint field, first hour kept, calls TTL, endpoints TTL.
# Returns {1 spent | 0 refused | -1 cooldown, used, effective limit, "field n,field n", deadline, reason}.
SPEND = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[4])
if limit > 0 then
  local raw = redis.call('GET', KEYS[3])
  if raw then
    local ok, cd = pcall(cjson.decode, raw)
    local deadline, reason = tonumber(raw), 'rate_limited'
    if ok and type(cd) == 'table' then deadline, reason = tonumber(cd['until']), tostring(cd['reason'] or reason) end
    if deadline and deadline > now then return {-1, 0, 0, '', tostring(deadline), reason} end
  end
  local lraw = redis.call('GET', KEYS[4])
  if lraw then
    local ok, learned = pcall(cjson.decode, lraw)
    if ok and type(learned) == 'table' and tonumber(learned['limit']) then
      limit = math.min(limit, tonumber(learned['limit']))
    end
  end
end
local first = tonumber(ARGV[3])
local fields = redis.call('HGETALL', KEYS[1])
local used, stale, per = 0, {}, {}  -- per: "bucket n" pairs in one string, cheap to parse
for i = 1, #fields, 2 do
  local b = tonumber(string.match(fields[i], '^%-?%d+'))
  if b == nil or b < first then
    stale[#stale + 1] = fields[i]
  else
    local n = tonumber(fields[i + 1]) or 0
    used = used + n
    per[#per + 1] = fields[i] .. ' ' .. fields[i + 1]
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
if limit > 0 then
  if used + 1 > limit - tonumber(ARGV[5]) then return {0, used, limit, table.concat(per, ',')} end
  redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[1], ARGV[8])
  used = used + 1
end
if redis.call('HINCRBY', KEYS[2], ARGV[6], 1) == 1 then
  -- The first call of an endpoint in a new hour: drop the hours that left the span.
  local old = {}
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    local h = tonumber(string.match(f, '^%-?%d+'))
    if h == nil or h < tonumber(ARGV[7]) then old[#old + 1] = f end
  end
  if #old > 0 then redis.call('HDEL', KEYS[2], unpack(old)) end
end
redis.call('EXPIRE', KEYS[2], ARGV[9])
return {1, used, limit, table.concat(per, ',')}
"""


def parse_buckets(text: str) -> dict[int, int]:
    """The script's "field n,field n" list as bucket -> calls. A bucket may come in several
    fields (`<bucket>` and `<bucket>:<origin>` for counts merged from a state dir)."""
    per: dict[int, int] = {}
    for pair in text.split(",") if text else ():
        field, n = pair.split(" ")
        bucket = int(field.split(":", 1)[0])
        per[bucket] = per.get(bucket, 0) + int(n)
    return per
