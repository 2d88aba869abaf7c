// Package sqldb opens the named databases of mailbot's configuration
// (SQLite, PostgreSQL, MySQL/MariaDB) for scripts, and reads their rows as
// a few plain Go types.
//
// A Set holds one connection pool (*sql.DB) per configured database,
// opened lazily by the first Open of that name and shared by every run
// until the Set is closed (at a config reload or at shutdown).
//
// Databases are read-only unless configured otherwise: SQLite is opened
// with mode=ro and the query_only pragma, PostgreSQL sessions get
// default_transaction_read_only=on, MySQL/MariaDB connections run SET
// SESSION TRANSACTION READ ONLY as they are opened, and on the two
// servers every query also runs in a read-only transaction, so a session
// setting changed by a query does not outlive that query. Exec refuses at
// once. These guard against mistakes; a database user with only SELECT
// rights is the real protection.
//
// The DSN and password are read when a pool is opened and never appear in
// an error: messages from drivers are scrubbed of them.
package sqldb
