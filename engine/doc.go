// Package engine makes mailbot an automation tool: it loads every *.lua
// script in a directory, keeps them current as they are edited, and runs
// their handlers when files land in watched folders or schedules fire.
//
// Each script runs in its own Lua state (built by luabind.NewState). Its
// top-level code registers triggers through the global mailbot table:
//
//	mailbot.on_file({ dir = "/srv/drop", pattern = "*.csv", settle = "2s",
//	                  after = "move:done" }, function(ev) ... end)
//	mailbot.every("5m", function(ev) ... end)
//	mailbot.cron("0 8 * * 1-5", function(ev) ... end, { tz = "Asia/Shanghai" })
//	mailbot.on_start(function(ev) ... end)
//	mailbot.state.set("last_sent", os.time())   -- persisted per script
//
// The parts, each with its own type and tests:
//
//   - Watcher: fsnotify on a directory, debounced per path, so an editor's
//     write-temp-and-rename save is one event;
//   - Scheduler and Schedule: cron (5 or 6 fields, descriptors, time zones,
//     daylight-saving changes as Vixie cron handles them) and "every"
//     intervals, driven by an injectable Clock;
//   - FileTrigger and Ledger: a dropped file is handed over only once its
//     size and mtime have settled, exactly once per content across
//     restarts, then kept, deleted, moved, or moved to failed/ with an
//     .error note (or retried with backoff when the handler asks);
//   - StateStore: mailbot.state and the schedules' last runs, written
//     atomically;
//   - Engine: one goroutine owns the script registry and dispatches events;
//     runs of different scripts proceed in parallel up to Config.Workers,
//     runs of one script are serialised on its state.
//
// Hot reload compiles a changed script in a fresh state and swaps its
// triggers only when that succeeds: a broken edit keeps the old version
// running and logs file:line. Every run has a timeout that also stops a
// script stuck in a Lua loop; a failing run is logged and counted and
// affects nothing else. On shutdown the engine stops taking events, lets
// runs finish within a grace period and persists state.
//
// Programs embed the engine with New and Run:
//
//	e, err := engine.New(engine.Config{ScriptsDir: "scripts", StateDir: "state"},
//		engine.WithLogger(logger),
//		engine.WithModule("inventory", inventoryLoader))
//	if err != nil { ... }
//	err = e.Run(ctx) // until ctx is cancelled
//
// Run locks StateDir (LockStateDir, a flock on StateDir/mailbot.lock
// holding the PID), so a second engine on the same directory fails with a
// *StateDirInUseError instead of firing every schedule twice. A program
// that does other work on StateDir first takes the lock itself and hands
// it over with WithStateLock.
package engine
