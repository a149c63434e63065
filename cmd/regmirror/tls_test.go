package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regmirror/regmirror/refpack/registrytest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial to certFile/keyFile and returns it.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "regmirror test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	// Write to temp names and rename, as a certificate renewal tool does.
	os.WriteFile(certFile+".new", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile+".new", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	os.Rename(keyFile+".new", keyFile)
	os.Rename(certFile+".new", certFile)
	c, _ := x509.ParseCertificate(der)
	return c
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServe runs `regmirror serve` with args until the test ends.
func startServe(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"serve", "--data", t.TempDir(), "--log-level", "warn"}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func TestTLSServesHTTP2AndPicksUpARenewedCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	addr := freePort(t)
	startServe(t, "--listen", addr, "--tls-cert", certFile, "--tls-key", keyFile,
		"--refpack-upstream", "http://127.0.0.1:1", "--hydrilla-upstream", "http://127.0.0.1:1")
	get := func(ca *x509.Certificate) (*http.Response, error) {
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
		return c.Get("https://" + addr + "/healthz")
	}
	var resp *http.Response
	var err error
	for i := 0; i < 100; i++ {
		if resp, err = get(first); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 1 {
		t.Fatalf("proto %s, serial %v", resp.Proto, resp.TLS.PeerCertificates[0].SerialNumber)
	}
	time.Sleep(1100 * time.Millisecond) // modification times must differ
	second := writeCert(t, certFile, keyFile, 2)
	time.Sleep(1100 * time.Millisecond) // the reloader looks at most once a second
	for i := 0; i < 3; i++ {
		if resp, err = get(second); err == nil && resp.TLS.PeerCertificates[0].SerialNumber.Int64() == 2 {
			resp.Body.Close()
			return
		}
		time.Sleep(1100 * time.Millisecond)
	}
	t.Fatalf("renewed certificate not served: %v", err)
}

func TestUpstreamCA(t *testing.T) {
	reg := registrytest.New()
	reg.AddPackage("vendor", "country-codes", "1.0.0")
	up := httptest.NewTLSServer(reg)
	defer up.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600)
	for _, tc := range []struct {
		name   string
		args   []string
		status int
	}{
		{"trusted", []string{"--upstream-ca", caFile}, 200},
		{"unknown authority", nil, 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freePort(t)
			startServe(t, append([]string{"--listen", addr, "--refpack-upstream", up.URL, "--hydrilla-upstream", "http://127.0.0.1:1"}, tc.args...)...)
			var resp *http.Response
			var err error
			for i := 0; i < 100; i++ {
				if resp, err = http.Get("http://" + addr + "/packages/vendor/country-codes/meta?version=1.0.0"); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if tc.status == 502 && !strings.Contains(string(body), "certificate") {
				t.Errorf("the error does not name the certificate problem: %s", body)
			}
		})
	}
}
