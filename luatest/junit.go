package luatest

import (
	"encoding/xml"
	"fmt"
	"io"
)

// JUnit XML, in the form CI systems read: one testsuite per file, one
// testcase per test, a failure element with the message and details.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Tests   int          `xml:"tests,attr"`
	Fails   int          `xml:"failures,attr"`
	Errors  int          `xml:"errors,attr"`
	Time    string       `xml:"time,attr"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name   string      `xml:"name,attr"`
	Tests  int         `xml:"tests,attr"`
	Fails  int         `xml:"failures,attr"`
	Errors int         `xml:"errors,attr"`
	Time   string      `xml:"time,attr"`
	Cases  []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",chardata"`
}

func seconds(d interface{ Seconds() float64 }) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteJUnit writes r as JUnit XML. A file that did not load is a suite
// with one errored test case named after the file.
func WriteJUnit(w io.Writer, r *Result) error {
	doc := junitSuites{Time: seconds(r.Duration)}
	for _, f := range r.Files {
		s := junitSuite{Name: f.File, Time: seconds(f.Duration)}
		if f.LoadError != "" {
			s.Tests, s.Errors = 1, 1
			s.Cases = append(s.Cases, junitCase{Name: "[load]", ClassName: f.File, Time: seconds(f.Duration),
				Error: &junitMessage{Message: firstLine(f.LoadError), Type: "LoadError", Body: f.LoadError}})
		}
		for _, t := range f.Tests {
			c := junitCase{Name: t.Name, ClassName: f.File, Time: seconds(t.Duration)}
			if t.Failure != nil {
				msg := t.Failure.Message
				if t.Failure.Where != "" {
					msg = t.Failure.Where + ": " + msg
				}
				c.Failure = &junitMessage{Message: msg, Body: t.Failure.Details()}
				s.Fails++
			}
			s.Tests++
			s.Cases = append(s.Cases, c)
		}
		doc.Tests += s.Tests
		doc.Fails += s.Fails
		doc.Errors += s.Errors
		doc.Suites = append(doc.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	return nil
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
