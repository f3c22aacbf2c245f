-- REAPER action: send a prompt to the SwanSphere OSC server and start generating.
--
-- The prompt defaults to the notes of the first selected media item (so a project can keep
-- its prompts on items), else the last prompt sent. While the server is already generating,
-- only the prompt changes (it takes effect at the next patch, about 0.19 s later).
-- Server address: ExtState section "SwanSphere", keys host / port / reply_port (defaults
-- 127.0.0.1, 9000, 9001). Needs LuaSocket (ReaPack: mavriq-lua-sockets).

local dir = debug.getinfo(1, "S").source:match("^@?(.*[/\\])")
local osc = dofile(dir .. "../swansphere_osc.lua")

local loaded, settings = pcall(osc.reaper_settings)
if not loaded then
  reaper.ShowMessageBox((tostring(settings):gsub("^.-:%d+: ", "")), "SwanSphere", 0)
  return
end
local host, port, reply_port = settings.host, settings.port, settings.reply_port

local default_prompt = ""
local item = reaper.GetSelectedMediaItem(0, 0)
if item then
  local _, notes = reaper.GetSetMediaItemInfo_String(item, "P_NOTES", "", false)
  default_prompt = notes:gsub("[\r\n]+", " ")
end
if default_prompt == "" then default_prompt = settings.prompt end

local ok, values = reaper.GetUserInputs(
  "SwanSphere", 2,
  "Prompt:,Format (binaural foa stereo 5.1 7.1.4):,extrawidth=420,separator=\n",
  default_prompt .. "\n" .. settings.format)
if not ok then return end
local prompt, format = values:match("^(.-)\n(.*)$")

local function run()
  local link = osc.connect(host, port, reply_port)
  local log = {}
  local function send(packet, timeout_s)
    link:send(packet)
    local address, args = link:receive(timeout_s or 1.0)
    if address then log[#log + 1] = address .. " " .. table.concat(args, " ") end
    return address, args
  end
  send(osc.reply_to("127.0.0.1", reply_port))
  local _, status = send(osc.status())
  local running = status and tostring(status[1]):match("^running") ~= nil
  if not running then send(osc.format(format)) end
  send(osc.prompt(prompt))
  if not running then send(osc.start(), 30.0) end -- the first start loads the model
  link:close()
  return table.concat(log, "\n")
end

local sent, result = pcall(run)
if not sent then
  reaper.ShowMessageBox((tostring(result):gsub("^.-:%d+: ", "")), "SwanSphere", 0)
  return
end
reaper.SetExtState("SwanSphere", "prompt", prompt, true)
reaper.SetExtState("SwanSphere", "format", format, true)
reaper.ShowConsoleMsg("SwanSphere\n" .. result .. "\n")
