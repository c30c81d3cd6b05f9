-- wrk script: every request carries the next token of a file (one per line), round robin, and
-- the headers given with -H.
-- Usage: wrk ... [-H header ...] -s rotate-tokens.lua URL -- tokens.txt
local tokens = {}
local requests = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  if #tokens == 0 then error("no tokens in " .. tostring(args[1])) end
end

function request()
  i = i % #tokens + 1
  local req = requests[i]
  if req == nil then
    local headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    headers["Authorization"] = "Bearer " .. tokens[i]
    req = wrk.format(nil, nil, headers)
    requests[i] = req
  end
  return req
end
