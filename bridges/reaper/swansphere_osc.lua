-- SwanSphere OSC for REAPER (and any Lua 5.3/5.4): message framing, the server's address
-- space, and a UDP sender. Pure Lua except the sender, which needs LuaSocket.
--
--   local osc = dofile(script_dir .. "swansphere_osc.lua")
--   local link = osc.connect("127.0.0.1", 9000, 9001)   -- server port, reply port (optional)
--   link:send(osc.prompt("rain on a tin roof, thunder behind"))
--   link:send(osc.start())
--   print(link:receive(2.0))                           -- "/swansphere/status", {"started: ..."}
--
-- Framing follows OSC 1.0: address and type-tag strings NUL-terminated and padded to 4
-- bytes, int32 and float32 big-endian, strings padded to 4 bytes, T/F carry no data.
-- The addresses and their limits are the server's (backend/swansphere/serve/osc.py).

local osc = {}

osc.FORMATS = { "foa", "binaural", "stereo", "5.1", "7.1.4" }
osc.MAX_PROMPT_CHARS = 10000

local function pad(s)
  -- NUL-terminate, then pad to a multiple of 4 bytes
  return s .. string.rep("\0", 4 - (#s % 4))
end

local function osc_string(value, what)
  if type(value) ~= "string" then
    error(what .. " must be a string, got " .. type(value), 3)
  end
  if value:find("\0", 1, true) then
    error(what .. " contains a NUL byte", 3)
  end
  return pad(value)
end

local function finite(value, what)
  if type(value) ~= "number" or value ~= value or value == math.huge or value == -math.huge then
    error(what .. " must be a finite number, got " .. tostring(value), 3)
  end
  return value
end

--- An OSC message with explicit type tags ("i", "f", "s", "T", "F"), as a byte string.
function osc.encode(address, tags, ...)
  if type(address) ~= "string" or address:sub(1, 1) ~= "/" then
    error("OSC address must be a string starting with '/', got " .. tostring(address), 2)
  end
  local args = table.pack(...)
  local parts = { osc_string(address, "OSC address"), osc_string("," .. tags, "type tags") }
  local n = 0
  for tag in tags:gmatch(".") do
    if tag == "T" or tag == "F" then
      -- no argument bytes
    else
      n = n + 1
      local value = args[n]
      if tag == "i" then
        if math.type(value) ~= "integer" or value < -2147483648 or value > 2147483647 then
          error("argument " .. n .. " of " .. address .. " must be a 32-bit integer, got " .. tostring(value), 2)
        end
        parts[#parts + 1] = string.pack(">i4", value)
      elseif tag == "f" then
        parts[#parts + 1] = string.pack(">f", finite(value, "argument " .. n .. " of " .. address))
      elseif tag == "s" then
        parts[#parts + 1] = osc_string(value, "argument " .. n .. " of " .. address)
      else
        error("unsupported OSC type tag '" .. tag .. "'", 2)
      end
    end
  end
  if n ~= args.n then
    error(address .. " with tags '" .. tags .. "' takes " .. n .. " arguments, got " .. args.n, 2)
  end
  return table.concat(parts)
end

--- Decode one OSC message (the server's replies): address, { arguments }.
function osc.decode(packet)
  local function read_string(at)
    local stop = packet:find("\0", at, true)
    if not stop then error("malformed OSC packet: unterminated string", 3) end
    local value = packet:sub(at, stop - 1)
    return value, at + ((stop - at) // 4 + 1) * 4
  end
  local address, at = read_string(1)
  local tags
  tags, at = read_string(at)
  if tags:sub(1, 1) ~= "," then error("malformed OSC packet: no type tags", 2) end
  local args = {}
  for tag in tags:sub(2):gmatch(".") do
    if tag == "i" then
      args[#args + 1], at = string.unpack(">i4", packet, at)
    elseif tag == "f" then
      args[#args + 1], at = string.unpack(">f", packet, at)
    elseif tag == "s" then
      args[#args + 1], at = read_string(at)
    elseif tag == "T" or tag == "F" then
      args[#args + 1] = (tag == "T")
    else
      error("unsupported OSC type tag '" .. tag .. "' in reply", 2)
    end
  end
  return address, args
end

-- The server's address space ---------------------------------------------------------

--- The caption the next patch is generated from ("" clears it). At most 10,000 characters.
function osc.prompt(text)
  if type(text) ~= "string" then error("prompt must be a string, got " .. type(text), 2) end
  local chars = utf8.len(text)
  if not chars then error("prompt is not valid UTF-8", 2) end
  if chars > osc.MAX_PROMPT_CHARS then
    error("prompt is " .. chars .. " characters; the limit is " .. osc.MAX_PROMPT_CHARS, 2)
  end
  return osc.encode("/swansphere/prompt", "s", text)
end

function osc.start() return osc.encode("/swansphere/start", "") end

function osc.stop() return osc.encode("/swansphere/stop", "") end

function osc.status() return osc.encode("/swansphere/status", "") end

--- Output format of the next start: foa, binaural, stereo, 5.1 or 7.1.4.
function osc.format(name)
  for _, known in ipairs(osc.FORMATS) do
    if name == known then return osc.encode("/swansphere/format", "s", name) end
  end
  error("unknown format " .. tostring(name) .. "; choose one of " .. table.concat(osc.FORMATS, ", "), 2)
end

--- Listener head as yaw, pitch, roll degrees (IEM SceneRotator's address).
function osc.head_ypr(yaw, pitch, roll)
  return osc.encode("/SceneRotator/ypr", "fff", yaw, pitch, roll)
end

--- Listener head as a quaternion (w, x, y, z) on the wire axes (x front, y left, z up).
function osc.head_quat(w, x, y, z)
  return osc.encode("/swansphere/head/quat", "ffff", w, x, y, z)
end

--- Where the server sends its /swansphere/status, /error and /file replies.
function osc.reply_to(host, port)
  return osc.encode("/swansphere/return", "si", host, port)
end

-- REAPER settings -------------------------------------------------------------------

--- Inside REAPER: the actions' settings from ExtState section "SwanSphere" (host, port,
--- reply_port, and the last format and prompt), with the defaults filled in.
function osc.reaper_settings()
  local function get(key, default)
    local value = reaper.GetExtState("SwanSphere", key)
    return value ~= "" and value or default
  end
  local settings = { host = get("host", "127.0.0.1"), format = get("format", "binaural"), prompt = get("prompt", "") }
  for key, default in pairs({ port = "9000", reply_port = "9001" }) do
    local text = get(key, default)
    settings[key] = math.tointeger(tonumber(text))
    if not settings[key] or settings[key] < 1 or settings[key] > 65535 then
      error("ExtState SwanSphere/" .. key .. " must be a port number 1..65535, got '" .. text .. "'", 2)
    end
  end
  return settings
end

-- UDP link (LuaSocket) -----------------------------------------------------------------

local Link = {}
Link.__index = Link

--- A UDP link to the server; with reply_port, also listens for its replies there.
function osc.connect(host, port, reply_port)
  local ok, socket = pcall(require, "socket")
  if not ok then
    error("LuaSocket is missing: install it (REAPER: ReaPack 'mavriq-lua-sockets'; "
      .. "Debian: apt install lua-socket)", 2)
  end
  local out = assert(socket.udp())
  assert(out:setpeername(host, port))
  local link = setmetatable({ socket = socket, out = out }, Link)
  if reply_port then
    link.replies = assert(socket.udp())
    assert(link.replies:setsockname("127.0.0.1", reply_port))
  end
  return link
end

function Link:send(packet)
  local ok, err = self.out:send(packet)
  if not ok then error("OSC send failed: " .. tostring(err), 2) end
end

--- The next reply within timeout_s seconds: address, { arguments }; nil on timeout.
function Link:receive(timeout_s)
  if not self.replies then error("no reply port: pass one to osc.connect", 2) end
  self.replies:settimeout(timeout_s)
  local packet = self.replies:receive()
  if not packet then return nil end
  return osc.decode(packet)
end

function Link:close()
  self.out:close()
  if self.replies then self.replies:close() end
end

return osc
