-- luagrow: Lua client of the allocator benchmarks. Grows a table's array
-- part (t[#t+1] = v) and its hash part, and builds one big string with
-- table.concat of 4 KiB pieces (a luaL_Buffer grown by realloc); checks
-- them and prints one RESULT line.
--
-- usage: lua luagrow.lua ITEMS MIB
local items, mib = tonumber(arg[1]), tonumber(arg[2])
assert(items and mib, "usage: lua luagrow.lua ITEMS MIB")

local t = {}
for i = 1, items do t[#t + 1] = i * 3 end
local h = {}
for i = 1, items // 2 do h["k" .. i] = i end

local pieces = {}
for i = 0, 63 do pieces[i] = string.format("%08d", i) .. string.rep(string.char(65 + i % 26), 4088) end
local n = mib * 256
local parts = {}
for i = 1, n do parts[i] = pieces[(i * 7) % 64] end
local s = table.concat(parts)

local sum = 0
for i = 1, #t do sum = sum + t[i] end
if #t ~= items or sum ~= 3 * items * (items - 1) // 2 + 3 * items then
  error("CORRUPTION: array part")
end
local hsum, hn = 0, 0
for _, v in pairs(h) do hsum = hsum + v; hn = hn + 1 end
if hn ~= items // 2 or hsum ~= hn * (hn + 1) // 2 then error("CORRUPTION: hash part") end
if #s ~= n * 4096 then error("CORRUPTION: string length " .. #s) end
local step = n > 512 and n // 512 or 1
local check = 0
for i = 1, n, step do
  local want = pieces[(i * 7) % 64]
  if s:sub((i - 1) * 4096 + 1, i * 4096) ~= want then error("CORRUPTION: piece " .. i) end
  check = (check * 31 + s:byte((i - 1) * 4096 + 8) + s:byte(i * 4096)) % 1000000007
end

local mapped = ""
local pre = (os.getenv("LD_PRELOAD") or ""):match("^[^: ]+")
if pre then
  local base = pre:match("[^/]+$")
  local f = assert(io.open("/proc/self/maps"))
  local maps = f:read("a")
  f:close()
  mapped = string.format(', "preload_mapped": %d', maps:find(base, 1, true) and 1 or 0)
end
print(string.format('RESULT {"workload": "lua", "items": %d, "hash_items": %d, "bytes": %d, '
                    .. '"checksum": %d%s}', #t, hn, #s, check, mapped))
