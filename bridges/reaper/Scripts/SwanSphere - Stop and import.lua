-- REAPER action: stop SwanSphere's OSC session and put what it wrote on a new track at
-- the edit cursor (a server without a sound card writes each session to a WAV file and
-- replies with its path; a server on this machine's sound card only stops).
-- Settings as in "SwanSphere - Prompt.lua". Needs LuaSocket (ReaPack: mavriq-lua-sockets).

local dir = debug.getinfo(1, "S").source:match("^@?(.*[/\\])")
local osc = dofile(dir .. "../swansphere_osc.lua")

local function run()
  local settings = osc.reaper_settings()
  local reply_port = settings.reply_port
  local link = osc.connect(settings.host, settings.port, reply_port)
  link:send(osc.reply_to("127.0.0.1", reply_port))
  link:receive(1.0)
  link:send(osc.stop())
  local path, status
  for _ = 1, 3 do -- /swansphere/file (file sink only), then /swansphere/status
    local address, args = link:receive(3.0)
    if not address then break end
    if address == "/swansphere/file" then path = args[1] end
    if address == "/swansphere/status" or address == "/swansphere/error" then status = args[1]; break end
  end
  link:close()
  return path, status
end

local ok, path, status = pcall(run)
if not ok then
  reaper.ShowMessageBox((tostring(path):gsub("^.-:%d+: ", "")), "SwanSphere", 0)
  return
end
reaper.ShowConsoleMsg("SwanSphere: " .. tostring(status or "no reply") .. "\n")
if path then
  reaper.Undo_BeginBlock()
  reaper.InsertMedia(path, 1) -- 1: on a new track
  reaper.Undo_EndBlock("SwanSphere: import generated audio", -1)
end
