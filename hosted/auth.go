package hosted

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/regmirror/regmirror/apikeys"
	"github.com/regmirror/regmirror/refpack"
)

// Write is where a write (push or archive) goes and under which key.
type Write struct {
	// Hosted: the mirror stores it, for Owner. Otherwise it is forwarded
	// upstream as before, with the client's own header (unless Refuse).
	Hosted bool
	// Owner is the hosted owner written to, as configured.
	Owner string
	// KeyName labels the key in logs; never the key itself.
	KeyName string
	// Refuse, when set, is the answer: 401, 403 or 400.
	Refuse *Answer
}

func unauthorized() *Answer {
	return errorAnswer(http.StatusUnauthorized, refpack.ErrTitleUnauthorized, refpack.MsgUnauthorized)
}

func forbidden(owner string) *Answer {
	return errorAnswer(http.StatusForbidden, "Forbidden", fmt.Sprintf("the API key may not write packages of owner '%s'", owner))
}

// authorize is the hosted owner's check of the request's key.
func authorize(keys *apikeys.Set, h http.Header, owner string) Write {
	k, d := keys.Authorize(h, owner)
	switch d {
	case apikeys.Unauthorized:
		return Write{Hosted: true, Owner: owner, Refuse: unauthorized()}
	case apikeys.Forbidden:
		return Write{Hosted: true, Owner: owner, KeyName: k.Name, Refuse: forbidden(owner)}
	}
	return Write{Hosted: true, Owner: owner, KeyName: k.Name}
}

// PushTarget decides where a push goes. formOwner is the multipart form's
// ownerId (hasOwner false for the RefPack CLI's raw form, which names none).
//
// A push naming a hosted owner is the mirror's: 401 without a known key, 403
// for a key not allowed that owner. The raw form goes to the one hosted owner
// its key may write; a key that may write several must name one (400), and a
// key the file does not hold, or one that may write no hosted owner, is
// forwarded upstream as before (it may be the upstream's own key).
func (s *RefPack) PushTarget(keys *apikeys.Set, h http.Header, formOwner string, hasOwner bool) Write {
	if hasOwner {
		owner, ok := s.HostedOwner(strings.TrimSpace(formOwner))
		if !ok {
			return Write{}
		}
		return authorize(keys, h, owner)
	}
	k, ok := keys.Lookup(apikeys.FromRequest(h))
	if !ok {
		return Write{}
	}
	switch w := k.Writable(s.list); len(w) {
	case 0:
		return Write{}
	case 1:
		return Write{Hosted: true, Owner: w[0], KeyName: k.Name}
	default:
		return Write{Hosted: true, KeyName: k.Name, Refuse: errorAnswer(http.StatusBadRequest, "Invalid request",
			fmt.Sprintf("this API key may write several hosted owners (%s) and the raw push names none: push the multipart form with ownerId", strings.Join(w, ", ")))}
	}
}

// ArchiveTarget decides where an archive of id goes: a hosted id is the
// mirror's (401/403 as for a push); any other is forwarded.
func (s *RefPack) ArchiveTarget(keys *apikeys.Set, h http.Header, id string) Write {
	if !s.Hosts(id) {
		return Write{}
	}
	owner, _, _ := strings.Cut(id, "/")
	owner, _ = s.HostedOwner(owner)
	return authorize(keys, h, owner)
}
