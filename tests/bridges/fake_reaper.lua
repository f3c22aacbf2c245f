-- Runs a REAPER action script outside REAPER: a stand-in for the few reaper.* functions
-- the SwanSphere scripts call, driven by environment variables, reporting what the script
-- did on stdout (one "KIND text" line each).
--
--   SWANSPHERE_PORT / SWANSPHERE_REPLY_PORT  ExtState port / reply_port
--   ITEM_NOTES    notes of a selected media item (unset: no item selected)
--   USER_INPUT    what the user types into GetUserInputs, fields joined by "\n"
--                 (unset: the user accepts the defaults)
--   lua5.4 fake_reaper.lua SCRIPT

local function escape(s) return (s:gsub("\n", "\\n")) end

local ext = {
  port = os.getenv("SWANSPHERE_PORT") or "",
  reply_port = os.getenv("SWANSPHERE_REPLY_PORT") or "",
}

reaper = {
  GetExtState = function(section, key)
    assert(section == "SwanSphere", "unexpected ExtState section " .. section)
    return ext[key] or ""
  end,
  SetExtState = function(_, key, value, _)
    ext[key] = value
    print("EXTSTATE " .. key .. "=" .. escape(value))
  end,
  GetSelectedMediaItem = function(_, _)
    return os.getenv("ITEM_NOTES") and "item" or nil
  end,
  GetSetMediaItemInfo_String = function(item, name, _, set)
    assert(item == "item" and name == "P_NOTES" and not set)
    return true, os.getenv("ITEM_NOTES")
  end,
  GetUserInputs = function(title, count, captions, defaults)
    print("INPUTS " .. title .. " " .. count .. " " .. escape(captions) .. " | " .. escape(defaults))
    return true, os.getenv("USER_INPUT") or defaults
  end,
  ShowConsoleMsg = function(message) print("CONSOLE " .. escape(message)) end,
  ShowMessageBox = function(message, title, kind)
    assert(type(message) == "string" and title == "SwanSphere" and kind == 0, "bad ShowMessageBox call")
    print("MESSAGEBOX " .. message)
    return 1
  end,
  InsertMedia = function(path, mode) print("INSERT " .. mode .. " " .. path); return 1 end,
  Undo_BeginBlock = function() end,
  Undo_EndBlock = function(_, _) end,
}

dofile(assert(arg[1], "usage: lua5.4 fake_reaper.lua SCRIPT"))
