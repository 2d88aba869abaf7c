// Package dbtest gives tests the DSNs of the real PostgreSQL and MariaDB
// servers that scripts/ci-databases.sh starts.
//
// Tests using it skip when the server's variable is not set, except under
// CI (CI=true), where .ci/run starts the servers and a missing one fails.
package dbtest

import (
	"os"
	"testing"
)

// The variables scripts/ci-databases.sh writes into its ENVFILE.
const (
	PostgresEnv = "MAILBOT_TEST_POSTGRES_DSN"
	MySQLEnv    = "MAILBOT_TEST_MYSQL_DSN"
)

// DSN returns the DSN in the variable env, skipping the test without it
// (failing it under CI=true).
func DSN(t testing.TB, env string) string {
	t.Helper()
	dsn := os.Getenv(env)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is not set: .ci/run starts the servers with scripts/ci-databases.sh", env)
		}
		t.Skipf("%s is not set; scripts/ci-databases.sh start ENVFILE starts a test server and writes it", env)
	}
	return dsn
}
