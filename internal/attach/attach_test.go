package attach

import (
	"errors"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

// A volume name QEMU refuses as a node name gets a well-formed one, still
// told apart by a hash of the whole name.
func TestNodeName(t *testing.T) {
	if got := nodeName("vm1-disk0"); got != "vm1-disk0" {
		t.Errorf("nodeName(vm1-disk0) = %q", got)
	}
	a, b := nodeName("0starts-with-a-digit-and-is-long"), nodeName("0starts-with-a-digit-and-is-longer")
	if !strings.HasPrefix(a, "es-0starts-with-a-dig-") || len(a) > 31 || !qemuIDRE.MatchString(a) || a == b {
		t.Errorf("node names %q and %q", a, b)
	}
}

// Escaping: a socket path with a comma, a name with a quote.
func TestSnippetEscapes(t *testing.T) {
	q, err := Snippet(apischema.AttachQEMU, Target{Name: "it's", Socket: "/run/a,b/nbd.sock"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(q, `server.path=/run/a,,b/nbd.sock`) || !strings.Contains(q, `'\''`) {
		t.Errorf("qemu snippet does not escape:\n%s", q)
	}
	x, err := Snippet(apischema.AttachLibvirt, Target{Name: "a<b", TCP: true, Host: "h", Port: "1", TLS: true, TLSDir: "/x--y"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(x, "name='a&lt;b'") || !strings.Contains(x, "tls='yes'") || strings.Contains(x, "/x--y") {
		t.Errorf("libvirt snippet does not escape:\n%s", x)
	}
	if _, err := Snippet("vmware", Target{Name: "v"}); !errors.Is(err, ErrKind) {
		t.Errorf("unknown kind: %v, want ErrKind", err)
	}
}
