#!/usr/bin/perl
# fault-proxy.pl LISTEN UPSTREAM MODE MATCH — a Firecracker API proxy for the
# reliability tests: it serves LISTEN (an AF_UNIX socket) and forwards each
# HTTP request to the VMM's socket UPSTREAM, one connection upstream per
# client connection, in order. A request whose text contains MATCH is not
# forwarded: MODE "error" answers it as Firecracker does a failed call (400
# with a fault_message), MODE "hang" never answers it (the connection stays
# silent until the client gives up and closes it). Perl (perl-base) so the
# tests need nothing beyond Debian's essential packages.
use strict;
use warnings;
use IO::Socket::UNIX;
use Socket;

my ($listen, $upstream, $mode, $match) = @ARGV;
die "usage: $0 LISTEN UPSTREAM error|hang MATCH\n"
	unless defined $match && ($mode eq 'error' || $mode eq 'hang');
$SIG{CHLD} = 'IGNORE';
$SIG{PIPE} = 'IGNORE';
unlink $listen;
my $srv = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $listen, Listen => 16)
	or die "fault-proxy: listen on $listen: $!\n";
print STDERR "fault-proxy: $listen -> $upstream, $mode on '$match'\n";

# One HTTP message (head and Content-Length body) from $fh, buffered in $$buf.
sub read_msg {
	my ($fh, $buf) = @_;
	my $chunk;
	while (index($$buf, "\r\n\r\n") < 0) {
		return undef unless sysread($fh, $chunk, 65536);
		$$buf .= $chunk;
	}
	my $hlen = index($$buf, "\r\n\r\n") + 4;
	my $len = substr($$buf, 0, $hlen) =~ /^content-length:\s*(\d+)/im ? $1 : 0;
	while (length($$buf) < $hlen + $len) {
		return undef unless sysread($fh, $chunk, 65536);
		$$buf .= $chunk;
	}
	return substr($$buf, 0, $hlen + $len, '');
}

sub serve {
	my ($c) = @_;
	my ($up, $cbuf, $ubuf) = (undef, '', '');
	while (defined(my $req = read_msg($c, \$cbuf))) {
		if (index($req, $match) >= 0) {
			my ($line) = $req =~ /^([^\r\n]*)/;
			print STDERR "fault-proxy: $mode: $line\n";
			if ($mode eq 'hang') {
				my $x;
				1 while sysread($c, $x, 65536);
				return;
			}
			my $body = '{"fault_message":"fault-proxy: injected error"}';
			syswrite($c, "HTTP/1.1 400 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n"
				. "Content-Type: application/json\r\nContent-Length: "
				. length($body) . "\r\n\r\n$body");
			next;
		}
		$up ||= IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $upstream) or return;
		syswrite($up, $req) or return;
		my $resp = read_msg($up, \$ubuf);
		return unless defined $resp;
		syswrite($c, $resp) or return;
	}
}

while (1) {
	my $c = $srv->accept or next;
	my $pid = fork;
	if (defined $pid && $pid == 0) {
		close $srv;
		serve($c);
		exit 0;
	}
	close $c;
}
