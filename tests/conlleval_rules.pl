#!/usr/bin/perl
# Test fixture of tests/test_token_metrics.py, written for hf_mtl (not a copy of conlleval.pl): chunk
# scoring by the rules published with the CoNLL-2000 evaluation script `conlleval` (Tjong Kim Sang),
# used to check hf_mtl's headline precision/recall/F1 against an implementation outside Python.
#
# usage:  perl conlleval_rules.pl [-s] < file
# input:  one word per line, "word ... gold predicted" separated by white space (the last two fields are
#         the tags); an empty line or a line whose first field is -X- ends a sentence.
# -s:     also read S- tags as conlleval-style scorers that know IOBES do (seqeval's default mode):
#         E and S always end a chunk, B and S always start one. conlleval itself has no S tag.
# output: two lines, percentages with six decimals:
#         processed <tokens> tokens with <gold> phrases; found: <predicted> phrases; correct: <correct>.
#         accuracy: <a>%; precision: <p>%; recall: <r>%; FB1: <f>
use strict;
use warnings;

my $know_s = 0;
if (@ARGV and $ARGV[0] eq "-s") { $know_s = 1; shift @ARGV; }
die "usage: perl conlleval_rules.pl [-s] < file\n" if @ARGV;

# Tag "B-PER" -> ("B", "PER"); a tag without a hyphen ("O", "B") has the empty type.
sub parse_tag {
    my ($tag) = @_;
    return ($1, $2) if $tag =~ /^([^-]*)-(.*)$/;
    return ($tag, "");
}

# Does a chunk end between a word tagged ($prev, $prev_type) and the next one tagged ($tag, $type)?
sub ends_chunk {
    my ($prev, $tag, $prev_type, $type) = @_;
    my $pair = "$prev $tag";
    return 1 if grep { $pair eq $_ } ("B B", "B O", "I B", "I O", "E E", "E I", "E O");
    return 1 if $prev ne "O" and $prev ne "." and $prev_type ne $type;   # the type changes
    return 1 if $prev eq "[" or $prev eq "]";                             # bracket chunks are one word long
    if ($know_s) {
        return 1 if $prev eq "E" or $prev eq "S";
        return 1 if $tag eq "S" and ($prev eq "B" or $prev eq "I");
    }
    return 0;
}

# Does a chunk start at the word tagged ($tag, $type), after one tagged ($prev, $prev_type)?
sub starts_chunk {
    my ($prev, $tag, $prev_type, $type) = @_;
    my $pair = "$prev $tag";
    return 1 if grep { $pair eq $_ } ("B B", "I B", "O B", "O I", "E E", "E I", "O E");
    return 1 if $tag ne "O" and $tag ne "." and $prev_type ne $type;
    return 1 if $tag eq "[" or $tag eq "]";
    if ($know_s) {
        return 1 if $tag eq "B" or $tag eq "S";
        return 1 if $prev eq "S" and ($tag eq "E" or $tag eq "I");
    }
    return 0;
}

my ($tokens, $right_tags, $gold_chunks, $pred_chunks, $correct_chunks) = (0, 0, 0, 0, 0);
# previous word's tags; a sentence boundary counts as a word tagged O in both
my ($prev_gold, $prev_gold_type, $prev_pred, $prev_pred_type) = ("O", "", "O", "");
# whether the chunks open in gold and prediction started on the same word with the same type, and have
# ended on no word so far on which the other did not
my $matching = 0;

sub step {
    my ($gold_tag, $pred_tag, $is_word) = @_;
    my ($gold, $gold_type) = parse_tag($gold_tag);
    my ($pred, $pred_type) = parse_tag($pred_tag);
    my $gold_ends = ends_chunk($prev_gold, $gold, $prev_gold_type, $gold_type);
    my $pred_ends = ends_chunk($prev_pred, $pred, $prev_pred_type, $pred_type);
    if ($matching) {
        if ($gold_ends and $pred_ends and $prev_gold_type eq $prev_pred_type) {
            $correct_chunks++;
            $matching = 0;
        } elsif ($gold_ends != $pred_ends or $gold_type ne $pred_type) {
            $matching = 0;
        }
    }
    my $gold_starts = starts_chunk($prev_gold, $gold, $prev_gold_type, $gold_type);
    my $pred_starts = starts_chunk($prev_pred, $pred, $prev_pred_type, $pred_type);
    $matching = 1 if $gold_starts and $pred_starts and $gold_type eq $pred_type;
    $gold_chunks++ if $gold_starts;
    $pred_chunks++ if $pred_starts;
    if ($is_word) {
        $tokens++;
        $right_tags++ if $gold eq $pred and $gold_type eq $pred_type;
    }
    ($prev_gold, $prev_gold_type, $prev_pred, $prev_pred_type) = ($gold, $gold_type, $pred, $pred_type);
}

while (my $line = <STDIN>) {
    chomp $line;
    my @fields = split " ", $line;
    if (!@fields or $fields[0] eq "-X-") {
        step("O", "O", 0);
        next;
    }
    die "line $.: expected a word, a gold tag and a predicted tag, got '$line'\n" if @fields < 3;
    step($fields[-2], $fields[-1], 1);
}
$correct_chunks++ if $matching;    # a chunk open at the end of the input ends there

my $precision = $pred_chunks ? 100 * $correct_chunks / $pred_chunks : 0;
my $recall = $gold_chunks ? 100 * $correct_chunks / $gold_chunks : 0;
my $fb1 = $precision + $recall ? 2 * $precision * $recall / ($precision + $recall) : 0;
my $accuracy = $tokens ? 100 * $right_tags / $tokens : 0;
printf "processed %d tokens with %d phrases; found: %d phrases; correct: %d.\n",
    $tokens, $gold_chunks, $pred_chunks, $correct_chunks;
printf "accuracy: %.6f%%; precision: %.6f%%; recall: %.6f%%; FB1: %.6f\n", $accuracy, $precision, $recall, $fb1;
