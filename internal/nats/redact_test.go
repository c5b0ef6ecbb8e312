package nats

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, in := range []string{
		"nats://alice:S3CRET@host:4222",
		"alice:S3CRET@host:4222",
		"S3CRET@host:4222",
		"tls://S3CRET@host:4222",
		"alice:S3CRET@a:4222,nats://bob:S3CRET@b:4222, carol:S3CRET@c:4222",
		"nats://host:4222,alice:S3CRET@b:4222",
		"%zz:S3CRET@host",
	} {
		got := RedactURL(in)
		if strings.Contains(got, "S3CRET") {
			t.Errorf("RedactURL(%q) = %q: shows the secret", in, got)
		}
	}
	if got := RedactURL("alice:S3CRET@a:4222,nats://b:4222"); !strings.Contains(got, "a:4222") || !strings.Contains(got, "b:4222") {
		t.Errorf("the hosts are gone: %q", got)
	}
}
