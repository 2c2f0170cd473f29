/**
 * The changes to the shared state, as Lua run by Redis: each is atomic, bumps the namespace's
 * version and publishes what it changed with that version, so every follower applies changes
 * in one order and can tell when it missed one. Keys share the namespace's hash tag, so a
 * script's keys are in one Cluster slot.
 *
 * Entries are stored as spool/entry.ts serializes them; their ISO 8601 times compare as strings.
 */

/**
 * KEYS: version, index, then one entry key per entry. ARGV: channel, "replace" or "", then per
 * entry its address, stored form and expiry (ms). A later login wins, unless the entries
 * replace the stored ones (a session's end); an entry expires by itself (PXAT). Returns the
 * version and the addresses that changed.
 */
export const PUT = `
local changed, ips = {}, {}
for i = 3, #KEYS do
  local a = (i - 3) * 3 + 3
  local ip, value, expires = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local newer = true
  local current = ARGV[2] ~= 'replace' and redis.call('GET', KEYS[i])
  if current then
    local ok, cur = pcall(cjson.decode, current)
    local ok2, nxt = pcall(cjson.decode, value)
    if ok and ok2 and type(cur) == 'table' and type(cur.login) == 'string' and type(cur.expires) == 'string' then
      newer = nxt.login > cur.login or (nxt.login == cur.login and nxt.expires > cur.expires)
    end
  end
  if newer then
    redis.call('SET', KEYS[i], value, 'PXAT', expires)
    redis.call('ZADD', KEYS[2], expires, ip)
    changed[#changed + 1] = cjson.encode(ip) .. ':' .. value
    ips[#ips + 1] = ip
  end
end
if #ips == 0 then return {tonumber(redis.call('GET', KEYS[1]) or '0')} end
local version = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], '{"v":' .. version .. ',"op":"put","entries":{' .. table.concat(changed, ',') .. '}}')
table.insert(ips, 1, version)
return ips
`;

/**
 * KEYS: version, index, then one entry key per address. ARGV: channel, then the addresses.
 * Returns the version and the addresses that were present.
 */
export const REMOVE = `
local removed = {}
for i = 3, #KEYS do
  local ip = ARGV[i - 1]
  if redis.call('DEL', KEYS[i]) + redis.call('ZREM', KEYS[2], ip) > 0 then
    removed[#removed + 1] = ip
  end
end
if #removed == 0 then return {tonumber(redis.call('GET', KEYS[1]) or '0')} end
local version = redis.call('INCR', KEYS[1])
local quoted = {}
for i, ip in ipairs(removed) do quoted[i] = cjson.encode(ip) end
redis.call('PUBLISH', ARGV[1], '{"v":' .. version .. ',"op":"remove","ips":[' .. table.concat(quoted, ',') .. ']}')
table.insert(removed, 1, version)
return removed
`;
