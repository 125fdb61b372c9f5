// peers: real Go network peers for Faultline's tests, built from their Go modules (grpc-go, crypto/tls,
// net/http) and shipped in the toolbox image beside faultline-toolbox. Each subcommand succeeds or fails
// in a known way, so a test knows the ground truth of what Faultline must (and must not) report.
//
//	peers grpc-server PORT [flags]         faultline.Test/{Echo,Fail,Slow,Stream} and grpc.health.v1
//	peers grpc-client ADDR CALL [flags]    one channel, CALL = echo | fail | slow | stream | health;
//	                                       prints each call's status code, one per line
//	peers https-server PORT                HTTPS with a certificate made at start: /healthz answers 200
//	peers http-server PORT                 plain HTTP/1.1 (net/http, no h2c): /healthz answers 200
//	peers tls-client ADDR [--max-version 1.0|1.1|1.2|1.3] [--insecure] [--ca FILE] [--sni NAME]
//	                                       one handshake; prints "ok" or the error
//
// grpc-server flags: --stop-after D (GracefulStop after D: GOAWAY, then Stop 2 s later with whatever
// streams are still open), --keepalive-min D (the pings the server permits; default grpc-go's 5 min).
// grpc-client flags: --count N (calls, default 1), --interval D (between calls), --deadline D (per call),
// --cancel-after D (a stream call is cancelled by the client after D), --messages N (stream length),
// --slow D (how long Slow takes), --parallel (the calls at once, not one after another), --close-after D
// (the channel is closed after D, calls still open), --keepalive D (the client pings that often).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "grpc-server":
		err = grpcServer(os.Args[2], os.Args[3:])
	case "grpc-client":
		err = grpcClient(os.Args[2], os.Args[3:])
	case "https-server":
		err = httpsServer(os.Args[2])
	case "http-server":
		err = httpServer(os.Args[2])
	case "tls-client":
		err = tlsClient(os.Args[2], os.Args[3:])
	case "lookup":
		err = lookup(os.Args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: peers grpc-server PORT [flags] | grpc-client ADDR CALL [flags] | https-server PORT | http-server PORT | tls-client ADDR [flags] | lookup NAME")
	os.Exit(2)
}

// ---- gRPC ---------------------------------------------------------------------------------------------

// The test service is described by hand over well-known protobuf types (no generated code): Echo answers
// OK, Fail answers UNAVAILABLE, Slow answers after the milliseconds it is sent, Stream sends one message
// every 100 ms until the count it is sent, or the client goes away.
var testService = grpc.ServiceDesc{
	ServiceName: "faultline.Test",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: unary(func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return in, nil
		})},
		{MethodName: "Fail", Handler: unary(func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return nil, status.Error(codes.Unavailable, "no healthy upstream")
		})},
		{MethodName: "Slow", Handler: unary(func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			ms, _ := strconv.Atoi(in.GetValue())
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
				return in, nil
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			}
		})},
	},
	Streams: []grpc.StreamDesc{{StreamName: "Stream", ServerStreams: true, Handler: func(srv any, s grpc.ServerStream) error {
		in := new(wrapperspb.StringValue)
		if err := s.RecvMsg(in); err != nil {
			return err
		}
		n, _ := strconv.Atoi(in.GetValue())
		for i := 0; n == 0 || i < n; i++ {
			if err := s.SendMsg(wrapperspb.String(strconv.Itoa(i))); err != nil {
				return err
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-s.Context().Done():
				return status.FromContextError(s.Context().Err()).Err()
			}
		}
		return nil
	}}},
}

func unary(f func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		return f(ctx, in)
	}
}

func grpcServer(port string, args []string) error {
	fs := flag.NewFlagSet("grpc-server", flag.ExitOnError)
	stopAfter := fs.Duration("stop-after", 0, "GracefulStop after")
	keepaliveMin := fs.Duration("keepalive-min", 5*time.Minute, "the most frequent pings permitted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	s := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: *keepaliveMin, PermitWithoutStream: true}))
	if *stopAfter > 0 {
		time.AfterFunc(*stopAfter, func() {
			time.AfterFunc(2*time.Second, s.Stop)
			s.GracefulStop()
		})
	}
	s.RegisterService(&testService, struct{}{})
	h := health.NewServer()
	h.SetServingStatus("faultline.Test", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, h)
	fmt.Println("listening on", port)
	return s.Serve(lis)
}

func grpcClient(addr string, args []string) error {
	if len(args) < 1 {
		usage()
	}
	call := args[0]
	fs := flag.NewFlagSet("grpc-client", flag.ExitOnError)
	count := fs.Int("count", 1, "calls")
	interval := fs.Duration("interval", 0, "between calls")
	deadline := fs.Duration("deadline", 0, "per call")
	cancelAfter := fs.Duration("cancel-after", 0, "cancel a stream after")
	messages := fs.Int("messages", 3, "stream length (0: endless)")
	slow := fs.Duration("slow", time.Second, "how long Slow takes")
	parallel := fs.Bool("parallel", false, "the calls at once")
	closeAfter := fs.Duration("close-after", 0, "close the channel after")
	ping := fs.Duration("keepalive", 0, "client keepalive pings")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if *ping > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: *ping, Timeout: 5 * time.Second}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	if *closeAfter > 0 {
		time.AfterFunc(*closeAfter, func() { conn.Close() })
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 0; i < *count; i++ {
		if i > 0 {
			time.Sleep(*interval)
		}
		wg.Add(1)
		one := func() {
			defer wg.Done()
			code := grpcCall(conn, call, *deadline, *slow, *messages, *cancelAfter)
			mu.Lock()
			fmt.Println(code)
			mu.Unlock()
		}
		if *parallel {
			go one()
		} else {
			one()
		}
	}
	wg.Wait()
	return nil
}

// grpcCall makes one call and returns its status code.
func grpcCall(conn *grpc.ClientConn, call string, deadline, slow time.Duration, messages int, cancelAfter time.Duration) codes.Code {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if deadline > 0 {
		ctx, cancel = context.WithTimeout(ctx, deadline)
	}
	defer cancel()
	var err error
	out := new(wrapperspb.StringValue)
	switch call {
	case "echo":
		err = conn.Invoke(ctx, "/faultline.Test/Echo", wrapperspb.String("hello"), out)
	case "fail":
		err = conn.Invoke(ctx, "/faultline.Test/Fail", wrapperspb.String("x"), out)
	case "slow":
		err = conn.Invoke(ctx, "/faultline.Test/Slow", wrapperspb.String(strconv.Itoa(int(slow.Milliseconds()))), out)
	case "health":
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "faultline.Test"})
	case "stream":
		err = stream(ctx, conn, messages, cancelAfter)
	default:
		usage()
	}
	return status.Code(err)
}

func stream(ctx context.Context, conn *grpc.ClientConn, messages int, cancelAfter time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cancelAfter > 0 {
		time.AfterFunc(cancelAfter, cancel)
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/faultline.Test/Stream")
	if err != nil {
		return err
	}
	if err := s.SendMsg(wrapperspb.String(strconv.Itoa(messages))); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		if err := s.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			if err.Error() == "EOF" {
				return nil
			}
			return err
		}
	}
}

// ---- TLS ----------------------------------------------------------------------------------------------

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "peers"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"peers"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func httpsServer(port string) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Addr: ":" + port, Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	fmt.Println("listening on", port)
	return srv.ListenAndServeTLS("", "")
}

// httpServer is Go's own HTTP/1.1 server: what it answers a TLS ClientHello or an HTTP/2 preface with is
// what a real server does.
func httpServer(port string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	lis, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	fmt.Println("listening on", port)
	return http.Serve(lis, mux)
}

var tlsVersions = map[string]uint16{"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

func tlsClient(addr string, args []string) error {
	fs := flag.NewFlagSet("tls-client", flag.ExitOnError)
	maxVersion := fs.String("max-version", "1.3", "highest version offered")
	skip := fs.Bool("insecure", false, "do not verify the server's certificate")
	caFile := fs.String("ca", "", "CA bundle to verify with")
	sni := fs.String("sni", "", "server name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tlsVersions[*maxVersion], InsecureSkipVerify: *skip, ServerName: *sni}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(pem)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		fmt.Println(err)
		return nil
	}
	fmt.Println("ok")
	return conn.Close()
}

// lookup resolves NAME with Go's own resolver (not glibc's): it reads /etc/resolv.conf, asks A and AAAA
// from a new socket each, and retries a query that timed out with a new id. Prints the addresses or the
// error; exits 0 either way.
func lookup(name string) error {
	r := &net.Resolver{PreferGo: true}
	addrs, err := r.LookupHost(context.Background(), name)
	if err != nil {
		fmt.Println(err)
		return nil
	}
	fmt.Println(strings.Join(addrs, " "))
	return nil
}
