-- Send SwanSphere OSC commands from a shell and print the server's replies (Lua 5.3/5.4
-- with LuaSocket). The REAPER scripts use the same module; this is for scripts, tests and
-- checking a setup before opening REAPER.
--
--   lua5.4 swansphere_send.lua [--host H] [--port P] [--reply-port R] [--wait S] COMMAND...
--
-- Commands, in order: prompt TEXT | format NAME | ypr YAW PITCH ROLL | quat W X Y Z |
-- start | stop | status. With --reply-port the server is first told to reply there, and
-- each reply that arrives within --wait seconds of a command is printed as
-- "ADDRESS ARG...". Exit status 2 with one line on bad usage or input.

local script_dir = (debug.getinfo(1, "S").source:match("^@?(.*[/\\])") or "./")
local osc = dofile(script_dir .. "swansphere_osc.lua")

local ARITY = { prompt = 1, format = 1, ypr = 3, quat = 4, start = 0, stop = 0, status = 0 }

local function fail(message)
  io.stderr:write("swansphere_send: " .. message .. "\n")
  os.exit(2)
end

local function number(text, what)
  local value = tonumber(text)
  if value == nil then fail(what .. " must be a number, got '" .. tostring(text) .. "'") end
  return value + 0.0
end

local function build(name, a)
  if name == "prompt" then return osc.prompt(a[1]) end
  if name == "format" then return osc.format(a[1]) end
  if name == "ypr" then
    return osc.head_ypr(number(a[1], "yaw"), number(a[2], "pitch"), number(a[3], "roll"))
  end
  if name == "quat" then
    return osc.head_quat(number(a[1], "w"), number(a[2], "x"), number(a[3], "y"), number(a[4], "z"))
  end
  return osc[name]()
end

local function port_number(text, what)
  local value = math.tointeger(tonumber(text or ""))
  if not value or value < 1 or value > 65535 then
    fail(what .. " must be a port number 1..65535, got '" .. tostring(text) .. "'")
  end
  return value
end

local host, port, reply_port, wait = "127.0.0.1", 9000, nil, 1.0
local packets, i = {}, 1
while i <= #arg do
  local word = arg[i]
  if word == "--host" then host, i = arg[i + 1] or fail("--host needs a value"), i + 2
  elseif word == "--port" then port, i = port_number(arg[i + 1], "--port"), i + 2
  elseif word == "--reply-port" then reply_port, i = port_number(arg[i + 1], "--reply-port"), i + 2
  elseif word == "--wait" then wait, i = number(arg[i + 1], "--wait"), i + 2
  elseif ARITY[word] then
    local args = table.move(arg, i + 1, i + ARITY[word], 1, {})
    if #args < ARITY[word] then fail(word .. " takes " .. ARITY[word] .. " argument(s)") end
    local ok, packet = pcall(build, word, args)
    if not ok then fail((tostring(packet):gsub("^.-:%d+: ", ""))) end
    packets[#packets + 1] = packet
    i = i + 1 + ARITY[word]
  else
    fail("unknown command '" .. word .. "'; commands: prompt format ypr quat start stop status")
  end
end
if #packets == 0 then fail("no command given") end

local ok, link = pcall(osc.connect, host, port, reply_port)
if not ok then fail((tostring(link):gsub("^.-:%d+: ", ""))) end

local function drain()
  if not reply_port then return end
  while true do
    local address, args = link:receive(wait)
    if not address then return end
    local words = { address }
    for _, v in ipairs(args) do words[#words + 1] = tostring(v) end
    print(table.concat(words, " "))
    io.stdout:flush()
  end
end

local function send(packet)
  local sent, err = pcall(link.send, link, packet)
  if not sent then
    fail((tostring(err):gsub("^.-:%d+: ", "")) .. " (is the server listening on " .. host .. ":" .. port .. "?)")
  end
  drain()
end

if reply_port then send(osc.reply_to("127.0.0.1", reply_port)) end
for _, packet in ipairs(packets) do send(packet) end
link:close()
