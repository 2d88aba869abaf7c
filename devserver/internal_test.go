package devserver

import (
	"errors"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

func TestLoginServer(t *testing.T) {
	type step struct {
		response  []byte
		challenge string
		done      bool
	}
	tests := []struct {
		name     string
		steps    []step
		wantUser string
		wantPass string
	}{
		{"without initial response", []step{
			{nil, "Username:", false},
			{[]byte("bot"), "Password:", false},
			{[]byte("s3cret"), "", true},
		}, "bot", "s3cret"},
		{"user name as initial response", []step{
			{[]byte("bot"), "Password:", false},
			{[]byte("s3cret"), "", true},
		}, "bot", "s3cret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotUser, gotPass string
			l := &loginServer{authenticate: func(u, p string) error { gotUser, gotPass = u, p; return nil }}
			for i, s := range tc.steps {
				ch, done, err := l.Next(s.response)
				if err != nil || string(ch) != s.challenge || done != s.done {
					t.Fatalf("step %d: Next = %q, %v, %v; want %q, %v, nil", i, ch, done, err, s.challenge, s.done)
				}
			}
			if gotUser != tc.wantUser || gotPass != tc.wantPass {
				t.Fatalf("authenticated %q/%q, want %q/%q", gotUser, gotPass, tc.wantUser, tc.wantPass)
			}
			if _, _, err := l.Next([]byte("extra")); !errors.Is(err, sasl.ErrUnexpectedClientResponse) {
				t.Fatalf("Next after completion = %v, want ErrUnexpectedClientResponse", err)
			}
		})
	}
}

func TestRejectSMTPError(t *testing.T) {
	tests := []struct {
		name string
		r    Reject
		want *gosmtp.SMTPError
	}{
		{"full", Reject{550, [3]int{5, 1, 1}, "no such user"}, &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}},
		{"no enhanced code", Reject{Code: 421, Message: "bye"}, &gosmtp.SMTPError{Code: 421, Message: "bye"}},
		{"positive code", Reject{Code: 250}, errInvalidReject},
		{"CR in text", Reject{Code: 550, Message: "a\rb"}, errInvalidReject},
		{"LF in text", Reject{Code: 550, Message: "a\nb"}, errInvalidReject},
		{"class mismatch", Reject{Code: 550, Enhanced: [3]int{4, 1, 1}}, errInvalidReject},
		{"negative detail", Reject{Code: 550, Enhanced: [3]int{5, -1, 1}}, errInvalidReject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.smtpError(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("smtpError() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMaildirUniqueName(t *testing.T) {
	md, err := openMaildir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	md.host = maildirHost("host:with/specials")
	now := time.Unix(1700000000, 42)
	a, b := md.uniqueName(now), md.uniqueName(now)
	want := regexp.MustCompile(`^1700000000000000042\.\d+_\d+\.host\\072with\\057specials$`)
	if !want.MatchString(a) || !want.MatchString(b) {
		t.Fatalf("names %q, %q do not match %s", a, b, want)
	}
	if a == b {
		t.Fatalf("same timestamp gave the same name %q twice", a)
	}
}
