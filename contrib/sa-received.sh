#!/bin/sh
# sa-received.sh - how closely Sift's Received parser reads the fields of a
# corpus as SpamAssassin's parser (parse_received_line) does.
#
#   contrib/sa-received.sh [-b BUILDDIR] [-t TOP] CORPUS_DIR...
#
# Takes every Received field of every file under the CORPUS_DIRs (messages,
# one per file), unfolded as SpamAssassin unfolds them, parses each with
# Sift (contrib/sa-received.c, built against BUILDDIR/libsift.a) and with
# SpamAssassin's own parser (one perl process), and prints the share of
# fields on which both agree per field (ip, rdns, helo, by, ident, envfrom,
# id, auth, no_rdns; a field SpamAssassin cannot read or ignores must be
# classified the same) and the TOP (default 15) most frequent shapes of
# the fields where ip, rdns, helo, by or no_rdns differ. Exits 77 (skip)
# without perl's Mail::SpamAssassin.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
builddir=${top_builddir:-$(pwd)}
ntop=15
while getopts b:t: opt; do
	case $opt in
	b) builddir=$OPTARG ;;
	t) ntop=$OPTARG ;;
	*) echo "usage: $0 [-b BUILDDIR] [-t TOP] CORPUS_DIR..." >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-b BUILDDIR] [-t TOP] CORPUS_DIR..." >&2; exit 2; }
if ! perl -MMail::SpamAssassin::Message::Metadata::Received -e 1 2>/dev/null; then
	echo "$0: perl's Mail::SpamAssassin is not installed; skipping" >&2
	exit 77
fi
[ -f "$builddir/libsift.a" ] || { echo "$0: no libsift.a in $builddir (use -b)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sa-received.XXXXXX")
trap 'rm -rf "$work"' EXIT

# shellcheck disable=SC2046 # print-libs prints a list of flags
${CC:-cc} -O2 -I"$top/include" -I"$top/milter" -I"$builddir" "$top/contrib/sa-received.c" \
	"$builddir/libsift.a" $(make -s -C "$builddir" print-libs | tail -n 1) -o "$work/sa-received"

# Every Received field's value, unfolded ("\n[ \t]+" -> " "), one a line.
find "$@" -type f | sort | perl -e '
	while (my $f = <STDIN>) {
		chomp $f;
		open(my $fh, "<", $f) or next;
		local $/ = undef;
		my $m = <$fh>;
		close $fh;
		$m =~ s/\r\n/\n/g;
		$m =~ s/^From [^\n]*\n//;
		my ($h) = split /\n\n/, $m, 2;
		$h =~ s/\n[ \t]+/ /g;
		for (split /\n/, $h) {
			print "$1\n" if /^Received:[ \t]*(.*)$/i;
		}
	}' >"$work/fields"

"$work/sa-received" <"$work/fields" >"$work/sift"

perl -e '
	use strict; use warnings;
	use Mail::SpamAssassin::Message::Metadata::Received;
	my $s = bless {allow_mailfetch_markers => 1}, "Mail::SpamAssassin::Message::Metadata";
	while (my $line = <STDIN>) {
		chomp $line;
		my $r = $s->parse_received_line($line);
		if (!defined $r) { print "UNPARSEABLE\n"; next; }
		if (!$r) { print "IGNORED\n"; next; }
		print join(" ", map { "$_=" . ($r->{$_} // "") }
		                qw(ip rdns helo by ident envfrom id auth)),
		      " no_rdns=", ($r->{no_reverse_dns} ? 1 : 0), "\n";
	}' <"$work/fields" >"$work/sa" 2>/dev/null

paste -d '\n' "$work/fields" "$work/sift" "$work/sa" | perl -e '
	use strict; use warnings;
	my $ntop = shift;
	my @names = qw(ip rdns helo by ident envfrom id auth no_rdns);
	my (%same, %shape, %example, $n, $kind, $core);
	sub fields {
		my ($s) = @_;
		return { map { $_ => $s } @names } if $s !~ /^ip=/;
		my %f;
		for my $k (@names) {
			$f{$k} = $s =~ /(?:^| )$k=(\S*)/ ? $1 : "";
		}
		return \%f;
	}
	while (defined(my $line = <STDIN>)) {
		chomp(my $sift = <STDIN>);
		chomp(my $sa = <STDIN>);
		chomp $line;
		$n++;
		my ($a, $b) = (fields($sift), fields($sa));
		$kind++ if ($sift =~ /^ip=/ ? "R" : $sift) eq ($sa =~ /^ip=/ ? "R" : $sa);
		my @diff;
		for my $k (@names) {
			if ($a->{$k} eq $b->{$k}) { $same{$k}++ } else { push @diff, $k }
		}
		my @cdiff = grep { /^(ip|rdns|helo|by|no_rdns)$/ } @diff;
		$core++ unless @cdiff;
		next unless @cdiff;
		# the shape: the field with names, addresses and numbers generalised
		(my $sh = $line) =~ s/;[^;]*$//;
		$sh =~ s/\b\d{1,3}(?:\.\d{1,3}){3}\b/IP/g;
		$sh =~ s/\b[\w-]+(?:\.[\w-]+)+\b/H/g;
		$sh =~ s/\b[\w.+-]*\@H\b/A/g;
		$sh =~ s/\bid [^\s;]+/id X/g;
		$sh =~ s/\d+/N/g;
		my $key = join(",", @cdiff) . "\t$sh";
		$shape{$key}++;
		$example{$key} //= "$line\n\t\tsift: $sift\n\t\tsa:   $sa";
	}
	exit 0 unless $n;
	printf "fields %d, same kind (parsed/unparseable/ignored) %.4f, ip+rdns+helo+by+no_rdns all same %.4f\n",
	       $n, $kind / $n, $core / $n;
	printf "  %-8s %.4f\n", $_, ($same{$_} // 0) / $n for @names;
	my @top = (sort { $shape{$b} <=> $shape{$a} || $a cmp $b } keys %shape)[0 .. $ntop - 1];
	for my $k (grep { defined } @top) {
		my ($d, $sh) = split /\t/, $k, 2;
		printf "%6d  %s\n\t%s\n\te.g. %s\n", $shape{$k}, $d, $sh, $example{$k};
	}' "$ntop"
