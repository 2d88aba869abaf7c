package devserver

import (
	"crypto/subtle"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// Replies the backend sends on its own behalf.
var (
	errAuthRequired = &gosmtp.SMTPError{
		Code:         530,
		EnhancedCode: gosmtp.EnhancedCode{5, 7, 0},
		Message:      "Authentication required",
	}
	// RFC 8689 §4.1: REQUIRETLS is only meaningful on a TLS session.
	errRequireTLSWithoutTLS = &gosmtp.SMTPError{
		Code:         530,
		EnhancedCode: gosmtp.EnhancedCode{5, 7, 10},
		Message:      "REQUIRETLS needs a TLS session",
	}
	errStore = &gosmtp.SMTPError{
		Code:         451,
		EnhancedCode: gosmtp.EnhancedCode{4, 3, 0},
		Message:      "Cannot store message, try again later",
	}
)

// backend creates one session per client greeting.
type backend struct{ s *Server }

// NewSession implements gosmtp.Backend.
func (b *backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &session{s: b.s, conn: c}, nil
}

// session holds one connection's authentication and the transaction in
// progress. go-smtp drives it from the connection's goroutine only (LMTP
// DATA runs on a helper goroutine while the connection waits), so it needs
// no locking.
type session struct {
	s        *Server
	conn     *gosmtp.Conn
	authUser string
	authed   bool

	from     string
	mailOpts map[string]string
	to       []string
	rcptOpts map[string]map[string]string
}

var (
	_ gosmtp.AuthSession = (*session)(nil)
	_ gosmtp.LMTPSession = (*session)(nil)
)

// AuthMechanisms implements gosmtp.AuthSession.
func (ss *session) AuthMechanisms() []string {
	if ss.s.cfg.OAuth2 != nil {
		return []string{sasl.Plain, sasl.Login, "XOAUTH2", sasl.OAuthBearer}
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements gosmtp.AuthSession.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			// Acting on behalf of another identity is not supported.
			if identity != "" && identity != user {
				return ss.authFailed(user, "authorization identity differs from user")
			}
			return ss.authenticate(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{authenticate: ss.authenticate}, nil
	case "XOAUTH2":
		if ss.s.cfg.OAuth2 != nil {
			return &xoauth2Server{ss: ss}, nil
		}
		return nil, gosmtp.ErrAuthUnknownMechanism
	case sasl.OAuthBearer:
		if ss.s.cfg.OAuth2 != nil {
			return ss.newOAuthBearerServer(), nil
		}
		return nil, gosmtp.ErrAuthUnknownMechanism
	default:
		return nil, gosmtp.ErrAuthUnknownMechanism
	}
}

// authenticate checks a user name and password against Config.Users.
func (ss *session) authenticate(user, pass string) error {
	users := ss.s.cfg.Users
	if len(users) > 0 {
		want, ok := users[user]
		// Compare even for unknown users so timing reveals less about
		// which user names exist.
		if subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 || !ok {
			return ss.authFailed(user, "wrong user name or password")
		}
	}
	ss.authUser, ss.authed = user, true
	return nil
}

func (ss *session) authFailed(user, reason string) error {
	remote := ""
	if a := ss.conn.Conn().RemoteAddr(); a != nil {
		remote = a.String()
	}
	ss.s.cfg.Logger.Info("auth failed", "user", user, "reason", reason, "remote", remote)
	return gosmtp.ErrAuthFailed
}

func (ss *session) isTLS() bool {
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

// Mail implements gosmtp.Session.
func (ss *session) Mail(from string, opts *gosmtp.MailOptions) error {
	if ss.s.cfg.RequireAuth && !ss.authed {
		return errAuthRequired
	}
	if opts != nil && opts.RequireTLS && !ss.isTLS() {
		return errRequireTLSWithoutTLS
	}
	if h := ss.s.cfg.Hooks.Mail; h != nil {
		if r := h(from); r != nil {
			return r.smtpError()
		}
	}
	ss.from = from
	ss.mailOpts = mailOptions(opts)
	return nil
}

// Rcpt implements gosmtp.Session.
func (ss *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if h := ss.s.cfg.Hooks.Rcpt; h != nil {
		if r := h(to); r != nil {
			return r.smtpError()
		}
	}
	ss.to = append(ss.to, to)
	if ss.rcptOpts == nil {
		ss.rcptOpts = make(map[string]map[string]string)
	}
	ss.rcptOpts[to] = rcptOptions(opts)
	return nil
}

// readMessage reads the DATA stream and builds the Message for the current
// transaction. An *gosmtp.SMTPError from the reader (message too large) is
// returned unwrapped because go-smtp only recognises it by type assertion.
func (ss *session) readMessage(r io.Reader) (*Message, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		if _, ok := err.(*gosmtp.SMTPError); ok {
			return nil, err
		}
		return nil, fmt.Errorf("devserver: read message data: %w", err)
	}
	return &Message{
		From:        ss.from,
		To:          append([]string(nil), ss.to...),
		MailOptions: ss.mailOpts,
		RcptOptions: ss.rcptOpts,
		Data:        data,
		TLS:         ss.isTLS(),
		AuthUser:    ss.authUser,
		Received:    time.Now(),
		QueueID:     fmt.Sprintf("Q%06d", ss.s.nextID.Add(1)),
	}, nil
}

// Data implements gosmtp.Session.
func (ss *session) Data(r io.Reader) error {
	m, err := ss.readMessage(r)
	if err != nil {
		return err
	}
	if h := ss.s.cfg.Hooks.Data; h != nil {
		if rej := h(m); rej != nil {
			return rej.smtpError()
		}
	}
	if err := ss.store(m); err != nil {
		return err
	}
	// go-smtp sends the code and text of an *SMTPError as they are, a 250
	// included: the accepting reply names the message.
	return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + m.QueueID}
}

// LMTPData implements gosmtp.LMTPSession: Hooks.Data judges the message as
// a whole, then Hooks.DataRcpt each recipient. The message is stored once,
// for the recipients that accepted it.
func (ss *session) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	m, err := ss.readMessage(r)
	if err != nil {
		return err
	}
	if h := ss.s.cfg.Hooks.Data; h != nil {
		if rej := h(m); rej != nil {
			return rej.smtpError()
		}
	}
	verdicts := make([]error, len(m.To))
	var accepted []string
	if h := ss.s.cfg.Hooks.DataRcpt; h != nil {
		for i, rcpt := range m.To {
			if rej := h(m, rcpt); rej != nil {
				verdicts[i] = rej.smtpError()
				continue
			}
			accepted = append(accepted, rcpt)
		}
	} else {
		accepted = m.To
	}
	if len(accepted) > 0 {
		stored := *m
		stored.To = accepted
		stored.RcptOptions = make(map[string]map[string]string, len(accepted))
		for _, rcpt := range accepted {
			stored.RcptOptions[rcpt] = m.RcptOptions[rcpt]
		}
		if err := ss.store(&stored); err != nil {
			// Recipients the hook accepted get the storage failure;
			// refused ones keep their own reply.
			for i := range verdicts {
				if verdicts[i] == nil {
					verdicts[i] = err
				}
			}
		}
	}
	// go-smtp expects exactly one status per RCPT, duplicates included.
	for i, rcpt := range m.To {
		status.SetStatus(rcpt, verdicts[i])
	}
	return nil
}

// store writes m to the Maildir (if any), records it and logs it.
func (ss *session) store(m *Message) error {
	log := ss.s.cfg.Logger
	if md := ss.s.maildir; md != nil {
		path, err := md.deliver(m.Data, m.Received)
		if err != nil {
			log.Error("store message", "err", err)
			return errStore
		}
		m.Path = path
	}
	ss.s.record(*m)
	log.Info("message received",
		"from", m.From, "to", m.To, "size", len(m.Data), "path", m.Path,
		"tls", m.TLS, "auth_user", m.AuthUser)
	return nil
}

// Reset implements gosmtp.Session. Authentication survives a reset; only
// the transaction is discarded.
func (ss *session) Reset() {
	ss.from, ss.mailOpts, ss.to, ss.rcptOpts = "", nil, nil, nil
}

// Logout implements gosmtp.Session.
func (ss *session) Logout() error { return nil }

// mailOptions turns go-smtp's parsed MAIL parameters back into keyword
// form so tests can assert exactly what a client sent.
func mailOptions(o *gosmtp.MailOptions) map[string]string {
	m := make(map[string]string)
	if o == nil {
		return m
	}
	if o.Size > 0 {
		m["SIZE"] = strconv.FormatInt(o.Size, 10)
	}
	if o.Body != "" {
		m["BODY"] = string(o.Body)
	}
	if o.UTF8 {
		m["SMTPUTF8"] = ""
	}
	if o.RequireTLS {
		m["REQUIRETLS"] = ""
	}
	if o.Return != "" {
		m["RET"] = string(o.Return)
	}
	if o.EnvelopeID != "" {
		m["ENVID"] = o.EnvelopeID
	}
	if o.Auth != nil {
		if *o.Auth == "" {
			m["AUTH"] = "<>"
		} else {
			m["AUTH"] = *o.Auth
		}
	}
	return m
}

// rcptOptions is mailOptions for RCPT parameters.
func rcptOptions(o *gosmtp.RcptOptions) map[string]string {
	m := make(map[string]string)
	if o == nil {
		return m
	}
	if len(o.Notify) > 0 {
		parts := make([]string, len(o.Notify))
		for i, n := range o.Notify {
			parts[i] = string(n)
		}
		m["NOTIFY"] = strings.Join(parts, ",")
	}
	if o.OriginalRecipient != "" {
		m["ORCPT"] = string(o.OriginalRecipientType) + ";" + o.OriginalRecipient
	}
	return m
}

// loginServer is the server side of the LOGIN SASL mechanism
// (draft-murchison-sasl-login), which go-sasl implements only for clients.
// The initial response, if any, is the user name.
type loginServer struct {
	step         int
	user         string
	authenticate func(user, pass string) error
}

// Next implements sasl.Server.
func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.authenticate(l.user, string(response))
	default:
		return nil, false, sasl.ErrUnexpectedClientResponse
	}
}
