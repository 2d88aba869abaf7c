package smtp_test

import (
	"testing"

	"github.com/mailbot/mailbot/smtp"
)

func TestSMTPErrorReplyText(t *testing.T) {
	tests := []struct {
		e    smtp.SMTPError
		want string
	}{
		{smtp.SMTPError{Code: 550, Message: "no such user"}, "no such user"},
		{smtp.SMTPError{Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "user unknown"}, "5.1.1 user unknown"},
		{smtp.SMTPError{Code: 554, Enhanced: smtp.EnhancedCode{5, 7, 1}, Message: "spam\n5.7.1 see the FAQ"}, "5.7.1 spam\n5.7.1 see the FAQ"},
		{smtp.SMTPError{Code: 454, Enhanced: smtp.EnhancedCode{4, 7, 0}}, "4.7.0"},
		{smtp.SMTPError{Code: 451, Enhanced: smtp.EnhancedCode{4, 3, 0}, Message: "\nsecond line"}, "4.3.0\nsecond line"},
	}
	for _, tc := range tests {
		if got := tc.e.ReplyText(); got != tc.want {
			t.Errorf("%+v: ReplyText() = %q, want %q", tc.e, got, tc.want)
		}
	}
}
