# The thread-pool benchmark as a chart: one panel per workload, a bar per
# implementation. 'make bench' runs: gnuplot -e "datafile='...';
# outfile='...'" mk/bench.gp, with the data spec/bench/threadpool.lua wrote.
set terminal svg size 960,560 dynamic font "sans,12" background rgb "white"
set output outfile
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top left horizontal samplen 1 width -3 font ",10"
set offsets 0, 0, graph 0.25, 0   # room for the key above the bars
set grid ytics
set yrange [0:*]
set xtics scale 0
set format x ""
set multiplot layout 2,2 title "Thread pool, 2 workers, medians (make bench)"
do for [i = 0:3] {
  set title system(sprintf("awk 'NR==%d+2' %s | sed 's/^\"\\([^\"]*\\)\".*/\\1/'", i, datafile))
  plot datafile every ::i::i using 2 title "concurrent" lc rgb "#3465a4", \
       '' every ::i::i using 3 title "luv" lc rgb "#73d216", \
       '' every ::i::i using 4 title "Python" lc rgb "#cc0000"
}
unset multiplot
