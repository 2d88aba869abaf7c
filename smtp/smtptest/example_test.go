package smtptest_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/smtp/smtptest"
)

// exampleTB stands in for the *testing.T a real test passes: an Example has
// none. It implements only what the constructors use.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (e *exampleTB) Helper()                   {}
func (e *exampleTB) Cleanup(f func())          { e.cleanups = append(e.cleanups, f) }
func (e *exampleTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (e *exampleTB) done() {
	for _, f := range e.cleanups {
		f()
	}
}

// A test scripts the server's side of a session, points the client under
// test at Addr, and checks Wait and Received afterwards. Here a bare
// connection plays the client.
func ExampleNewServer() {
	t := &exampleTB{} // in a test: the test's t
	defer t.done()

	srv := smtptest.NewServer(t, `
S: 220 fake.test ESMTP
C: EHLO localhost
S: 250 fake.test
C: QUIT
S: 221 2.0.0 bye
! expect-eof
`)

	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		panic(err)
	}
	r := bufio.NewReader(conn)
	for _, cmd := range []string{"EHLO localhost", "QUIT"} {
		line, _ := r.ReadString('\n')
		fmt.Println("server:", strings.TrimSpace(line))
		fmt.Fprintf(conn, "%s\r\n", cmd)
	}
	line, _ := r.ReadString('\n')
	fmt.Println("server:", strings.TrimSpace(line))
	conn.Close()

	fmt.Println("wait:", srv.Wait())
	fmt.Printf("received: %q\n", srv.Received())
	// Output:
	// server: 220 fake.test ESMTP
	// server: 250 fake.test
	// server: 221 2.0.0 bye
	// wait: <nil>
	// received: ["EHLO localhost" "QUIT"]
}
