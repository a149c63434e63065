-- wrk script for the /query benchmark: cycles through the request paths listed
-- (one a line) in the file named by the first script argument:
--   wrk -s bench/query.lua http://127.0.0.1:PORT -- paths.txt
-- Requests are formatted once per thread, so the script costs wrk little.
local reqs = {}
local i = 0

function init(args)
  local file = args[1] or "queries.txt"
  for line in io.lines(file) do
    if line ~= "" then
      reqs[#reqs + 1] = wrk.format("GET", line)
    end
  end
  if #reqs == 0 then
    error("no request paths in " .. file)
  end
  -- Each thread starts at a different place in the list.
  i = math.random(#reqs) - 1
end

function request()
  i = i % #reqs + 1
  return reqs[i]
end
