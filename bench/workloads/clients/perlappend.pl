# perlappend: Perl client of the allocator benchmarks. Appends 4 KiB pieces
# to one string ($s .= "x" x 4096, the piece led by its index) until it holds
# MIB MiB, checks its length and a sample of pieces, and prints one RESULT
# line with a checksum of the whole string.
#
# usage: perl perlappend.pl MIB
use strict;
use warnings;
use Time::HiRes qw(time);

my $mib = shift @ARGV or die "usage: perl perlappend.pl MIB\n";
my $n = $mib * 256;    # 4 KiB pieces
my $t0 = time;
my $s = "";
for my $i (0 .. $n - 1) {
    $s .= sprintf("%08d", $i) . ("x" x 4088);
}
my $t1 = time;
length($s) == $n * 4096 or die "CORRUPTION: length " . length($s) . "\n";
my $step = $n > 512 ? int($n / 512) : 1;
for (my $i = 0; $i < $n; $i += $step) {
    substr($s, $i * 4096, 9) eq sprintf("%08dx", $i) or die "CORRUPTION: piece $i\n";
}
my $sum = unpack("%32C*", $s);
my $mapped = -1;
my ($pre) = split /[: ]/, ($ENV{LD_PRELOAD} // "");
if ($pre) {
    my ($base) = $pre =~ m{([^/]+)$};
    open(my $m, "<", "/proc/self/maps") or die "maps: $!\n";
    local $/;
    my $maps = <$m>;
    $mapped = index($maps, $base) >= 0 ? 1 : 0;
}
printf "RESULT {\"workload\": \"perl\", \"region_seconds\": %.6f, \"bytes\": %d, "
     . "\"pieces\": %d, \"checksum\": %d%s}\n",
    $t1 - $t0, length($s), $n, $sum, $mapped >= 0 ? ", \"preload_mapped\": $mapped" : "";
