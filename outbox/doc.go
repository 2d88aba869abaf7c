// Package outbox is mailbot's durable outbox: a message is accepted to disk
// first and delivered after, temporary failures are retried with
// exponential backoff until a maximum age, permanent failures become dead
// letters with the server's reply, and nothing is dropped silently.
//
// # Use
//
//	ob, err := outbox.Open("/var/spool/mailbot", outbox.Options{Logger: log})
//	id, dup, err := ob.Enqueue(ctx, outbox.Envelope{Account: "default", From: from, To: to}, msg)
//	err = ob.Deliver(ctx, map[string]outbox.Account{"default": {Dialer: d, Addr: "smtp.example.org:587"}})
//
// mail.send in Lua maps to Enqueue (EnqueueBatch for a list), `mailbot
// run` to Deliver, `exec
// --deliver` to DeliverOnce and `mailbot queue ...` to List, Get, Dead,
// Corrupt, Inspect, Retry, RetryAll, Delete, Requeue, RequeueCorrupt and
// Stats, on an Outbox opened with Options.SkipRecovery.
//
// # Store: a spool directory
//
// The store is a directory of plain files, the way Postfix and msmtpq keep
// their queues, rather than an embedded database: it needs no new module,
// an operator can inspect and repair it with ls, head and mv, rename(2) gives
// atomic state changes, flock(2) gives per-message locks that die with their
// process, and any number of processes (daemon, CLI) can share it without a
// server. The layout:
//
//	queue/<id>   messages waiting for delivery
//	dead/<id>    dead letters
//	sent/<id>    delivered messages, kept for KeyRetention (idempotency)
//	keys/<sha256(key) hex>   idempotency records: a hard link to the
//	             message's file as first queued, whose metadata line has
//	             "key", "id" and "created"; older spools (and file systems
//	             without hard links) hold {"key","id","created"} instead
//	corrupt/<id> damaged files, byte for byte, each with <id>.note
//	receipts/<UTC day>.jsonl  one line per delivery: the relay's reply
//	             ("250 ... queued as 4Zx"), time, attempts (see Get)
//	tmp/         files being written; never read, stale ones removed by Open
//	lock         taken (flock) by an enqueue batch, across processes
//
// Every message file is one line of JSON metadata (Item, including the
// size and CRC-32C of the bytes), a newline, then the message bytes exactly
// as given to Enqueue. The Message-ID header therefore never changes across
// retries, so a receiver can recognise a duplicate. Ids are the enqueue
// time in hex microseconds plus random digits, so they sort by age.
//
// # Crash safety
//
// A file only ever enters queue/, dead/, sent/ or keys/ by rename of a
// complete temp file (or, for keys/, by link of such a file), so a reader
// sees an old or a new version, never a partial one. Enqueue commits a
// batch of concurrent calls together (group commit): it writes every temp
// file, renames them into place and flushes once (one syncfs(2) on Linux;
// fsync of each file before the rename and of the directories after it
// elsewhere), and only then returns. EnqueueBatch hands the committer a
// whole list as one group, so one caller (a script's mail.send of a
// list) gets the same single flush for many messages; a group is never
// split across flushes, and it is all or nothing: envelopes are checked
// first, and a message that cannot be written or renamed takes the rest
// of its group out with it (their files are removed before the flush, so
// nothing of it was acknowledged or can be delivered).
//
// Why syncfs and not fdatasync of the file plus fsync of queue/ and keys/,
// even for one message: measured on the development machine (ext4, 2
// vCPUs, 2.2 KB message plus its key, 300 rounds), one syncfs after the
// renames took 0.57-0.64 ms (median), the fdatasync-and-two-directories
// sequence 1.1-1.9 ms, and an fsync of the renamed file plus the two
// directories 0.74-1.7 ms: on ext4 every fsync of a new file or directory
// waits for its own journal commit, syncfs for one. syncfs also flushes
// other processes' dirty data on the same file system, which can make
// it slower on a busy disk; a list (EnqueueBatch) pays it once for all
// its messages either way. A message for which Enqueue returned is therefore on stable
// storage; a kill -9 or power failure before that may leave a renamed but
// unflushed file, which the size/CRC check identifies as damaged (see
// below). Keys are renamed after their
// messages, and a key whose message exists in no directory is treated as
// absent, so a key can never suppress a message that was not stored.
//
// State changes write the new file before removing the old one (queued to
// dead, dead to queued) and bump Item.Seq; after a crash between the two,
// Open keeps the copy with the higher Seq. A message being delivered is
// locked (flock on its file) by the delivering process, so the CLI's
// Retry/Delete/Requeue get ErrBusy instead of racing it, and a second
// delivering process skips it.
//
// # Damaged files
//
// A spool file that fails its check (no readable metadata line, message
// bytes that do not match the recorded size and CRC-32C, metadata of
// another message) is never deleted or skipped silently, whatever damaged
// it (a crash before the flush, a disk fault, a hand edit). A delivering
// process (Open without SkipRecovery, and every delivery attempt and
// rescan) moves it, under its lock, to corrupt/ unchanged, writes a
// corrupt/<id>.note (check, expected and found, origin, time, what to do)
// and logs at error level. Read-only looks (List and Dead leave damaged
// files out; Corrupt and Inspect report them wherever they are) move
// nothing, so `mailbot queue list` is safe next to a running daemon and
// leaves the spool byte for byte as it was. Inspect shows what survived:
// the envelope from the metadata line when it is intact, else from what
// could be read of it and from the From, To, Cc and Bcc headers; whether
// the header section is complete; how many bytes are missing.
// RequeueCorrupt puts a message whose recipients and header section
// survived back in the queue with a fresh checksum, keeping its id,
// envelope and idempotency key and noting the recovery in Item.Recovered;
// a message whose account was lost needs the account named. Files in
// tmp/ are the only ones ever removed without an operator: none of them
// is the only copy of an acknowledged message.
//
// # The duplicate window
//
// Delivery is at-least-once. Right after the server's 250 reply the worker
// sets the owner-execute bit on the message file it holds locked (one
// fchmod(2); spool files are created without it): that bit is the "sent"
// mark, and the kernel keeps it if the process dies the next instant. The
// move into sent/ follows off the delivery path, before the lock is
// released; a process that later locks a queued file carrying the mark
// (the next delivery run, or the CLI's Retry and Delete) finishes the move
// instead of sending it. A kill -9 between the 250 and the fchmod
// (microseconds, with no I/O in between) re-sends that one message after
// restart; so does one whose final dot went out but whose reply never came
// back. Messages are sent in batches with smtp.Client.SendBatch, but each
// is marked as its own 250 arrives, so the window stays one message wide
// (with CHUNKING too: the session's BatchWindow is 1, so the next message
// leaves only once the previous one is answered, one round trip each).
// To keep the delivery path free of per-message flushes, the directories
// are flushed every 256 deliveries and whenever a worker runs out of due
// work, so a power failure (not a process crash) may re-send the messages
// delivered since the last flush.
// A partial delivery (some recipients accepted, some deferred) is flushed
// at once, so only the pending recipients are retried. An
// *smtp.UnknownOutcomeError (the connection broke after the final dot)
// means the message may have been accepted: the outbox retries it (a
// possible duplicate, in line with at-least-once) and logs the attempt
// with outcome "unknown-deferred" at warning level.
//
// # Delivery
//
// Each account gets Concurrency workers. A worker reuses one SMTP session
// for as many due messages as there are (a refused transaction is reset
// with RSET by the smtp client; a successful one ends the transaction),
// sending them in windows of up to 32 with SendBatch while the next window
// is read from the spool, and reconnects after a connection-level
// failure. When nothing is due, Deliver keeps the session open for
// Account.IdleTimeout (default 30s) so that the next burst goes out
// without a new connection, TLS handshake and login, then closes it; a
// session that sat idle for over a second is checked with NOOP before it
// carries mail again, and one the server closed meanwhile is replaced
// without counting an attempt against any message. DeliverOnce closes its
// sessions when it runs out of due messages. When the relay cannot be reached, every due message
// of the account is deferred with that error without dialling again.
//
// Failures are classified with the smtp package's typed errors: 4yz
// replies, connection failures (refused, greeting refused, TLS failure,
// authentication failure: account problems an operator can fix), timeouts,
// disconnects and unknown outcomes are temporary; 5yz replies and an
// extension the message needs but the server lacks are permanent.
// Recipients refused one by one are handled one by one: accepted ones are
// recorded in Item.Delivered, temporarily refused ones stay in Item.To for
// the next attempt with their reply in Item.Waiting (LastError and
// LastReply then describe why they wait), permanently refused ones are
// recorded in Item.Refused, and once nothing is pending a message with refusals
// becomes a dead letter for exactly those recipients. A message still
// failing temporarily after MaxAge becomes a dead letter too.
//
// # Failover
//
// An Account with Fallback names the accounts its messages go through, in
// order, when it cannot open a session: the dial fails, the TLS handshake
// or certificate check fails, or the server refuses the greeting, EHLO,
// STARTTLS or AUTH (4yz or 5yz: a 535 on the primary is a configuration
// problem, logged at error level, but the message still goes out), or the
// password or token cannot be had. Only the listed accounts are tried, in
// order; their own fallbacks are not followed, so chains cannot loop.
// Names not among Deliver's accounts are skipped with a warning.
//
// The worker of the message's account fails over itself: the message
// stays in its account's queue and locked by that worker, which opens a
// session with the fallback's whole Account (its Dialer, Addr,
// credentials, OAuth2, Sign and SendOptions) and waits on the fallback's
// rate limiter, so failed-over messages count against the fallback's
// limit (its Concurrency bounds only its own workers). Nothing is ever
// sent twice by failing over, and the duplicate window stays one message:
// failover happens before any transaction of the session. Once MAIL was
// sent, every failure is the message's, handled as without fallbacks: a
// refused MAIL or RCPT is never a reason to fail over, and an unknown
// outcome after DATA stays with the account that may have delivered it.
//
// An account that failed to open a session is held off for
// Backoff.Initial (shared by every worker of the Deliver run): sessions
// go straight to the fallback meanwhile, and a fallback session is
// replaced by one with the own account at the first message after the
// hold-off. When every account fails (or is held off), the message is
// deferred with the usual backoff and a *FailoverError whose text lists
// each account's failure. Each attempt's record names the account used
// (account=backup fallback_for=relay); Item.Via records a fallback that
// made the last attempt, and a message delivered through one gets a sent/
// record saying so (Get, `mailbot queue show`).
//
// Every attempt is logged with one slog record carrying account, host,
// tls, auth_user, from, recipients, size, smtp_code, smtp_enhanced,
// smtp_text, error, outcome, attempt and next_attempt; Stats has the
// counters.
package outbox
