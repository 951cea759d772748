package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/baton-dev/baton/internal/valkeytest"
)

// TestTLS runs baton against a server that accepts only TLS clients with a
// certificate on its TLS port (valkeytest probes the plaintext port).
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := writePKI(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	valkeytest.Start(t, valkeytest.WithArgs("--tls-port", strconv.Itoa(port), "--tls-auth-clients", "yes",
		"--tls-cert-file", ca.serverCert, "--tls-key-file", ca.serverKey, "--tls-ca-cert-file", ca.caCert))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	base := []string{"leader", "--name", "x", "--addr", addr}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"CA and client certificate", []string{"--tls-ca", ca.caCert, "--tls-cert", ca.clientCert, "--tls-key", ca.clientKey}, exitNoLeader, ""},
		{"unknown CA", []string{"--tls"}, exitError, "TLS with valkey at " + addr + " failed: tls: failed to verify certificate"},
		{"no client certificate", []string{"--tls-ca", ca.caCert}, exitError, "client certificate"},
		{"plaintext to the TLS port", nil, exitError, "valkey at " + addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runBaton(t, nil, append(base, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("baton leader = %d %q; want %d and stderr containing %q", code, stderr, tc.code, tc.stderr)
			}
		})
	}
}

// pki names the PEM files written by writePKI.
type pki struct {
	caCert, serverCert, serverKey, clientCert, clientKey string
}

// writePKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA.
func writePKI(t *testing.T, dir string) pki {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "baton test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage, k *ecdsa.PrivateKey) []byte {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "baton test"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	serverKey, clientKey := newKey(), newKey()
	return pki{
		caCert:     write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", leaf(2, x509.ExtKeyUsageServerAuth, serverKey)),
		serverKey:  writeKey("server-key.pem", serverKey),
		clientCert: write("client.pem", "CERTIFICATE", leaf(3, x509.ExtKeyUsageClientAuth, clientKey)),
		clientKey:  writeKey("client-key.pem", clientKey),
	}
}
