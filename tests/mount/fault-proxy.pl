#!/usr/bin/perl
# fault-proxy.pl LISTEN UPSTREAM MODE MATCH [MODE MATCH ...] — a Firecracker
# API proxy for the reliability tests: it serves LISTEN (an AF_UNIX socket)
# and forwards each HTTP request to the VMM's socket UPSTREAM, one connection
# upstream per client connection, in order. A request whose text contains a
# MATCH is not forwarded (the first rule that matches counts): MODE "error"
# answers it as Firecracker does a failed call (400 with a fault_message),
# MODE "hang" never answers it (the connection stays silent until the client
# gives up and closes it), MODE "errorN" answers the first N such requests
# (over all connections) with an error and forwards the later ones. Perl
# (perl-base) so the tests need nothing beyond Debian's essential packages.
use strict;
use warnings;
use IO::Socket::UNIX;
use Socket;

my ($listen, $upstream, @rules) = @ARGV;
die "usage: $0 LISTEN UPSTREAM error|errorN|hang MATCH [...]\n"
	unless @rules >= 2 && @rules % 2 == 0 && !grep { !/^(error\d*|hang)$/ } @rules[grep { $_ % 2 == 0 } 0 .. $#rules];
$SIG{CHLD} = 'IGNORE';
$SIG{PIPE} = 'IGNORE';
unlink $listen;
my $srv = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $listen, Listen => 16)
	or die "fault-proxy: listen on $listen: $!\n";
print STDERR "fault-proxy: $listen -> $upstream, @rules\n";

# The rule a request falls under (mode, or undef to forward it). errorN
# counts its matches in a file beside LISTEN, shared by the connections'
# processes.
sub rule_for {
	my ($req) = @_;
	for (my $i = 0; $i < @rules; $i += 2) {
		my ($mode, $match) = @rules[$i, $i + 1];
		next if index($req, $match) < 0;
		return $mode unless $mode =~ /^error(\d+)$/;
		my $n = $1;
		open(my $f, '+>>', "$listen.count$i") or die "fault-proxy: count file: $!\n";
		flock($f, 2);
		seek($f, 0, 0);
		my $seen = <$f> // 0;
		truncate($f, 0);
		print $f $seen + 1;
		close $f;
		return $seen < $n ? 'error' : undef;
	}
	return undef;
}

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
		my $mode = rule_for($req);
		if (defined $mode) {
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
