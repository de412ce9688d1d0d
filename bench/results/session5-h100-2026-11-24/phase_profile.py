#!/usr/bin/env python3
# Reads the PROF lines of a -DPA_WIDE_PROFILE build (call1, call2): usage phase_profile.py DIR NAME...
# (NAME.txt.gz in DIR); prints the longest and shortest segment of the last launch, cycles per key tile by phase.
import gzip,sys
for name in sys.argv[2:]:
    L=[l.split() for l in gzip.open(f'{sys.argv[1]}/{name}.txt.gz','rt') if l.startswith('PROF')]
    recs=[dict(b=int(x[2]),qt=int(x[4]),t0=int(x[6]),t1=int(x[8]),warp=int(x[10]),sm=int(x[12]),start=int(x[14]),end=int(x[16]),cyc=list(map(int,x[18:26]))) for x in L]
    recs=recs[-len(recs)//9:]  # last launch (9 launches per bench line)
    t0=min(r['start'] for r in recs)
    print(name, 'recs',len(recs), 'span us', (max(r['end'] for r in recs)-t0)/1e3)
    for w in (0,7):
        segs=[r for r in recs if r['warp']==w]
        segs.sort(key=lambda r:-(r['t1']-r['t0']))
        for r in segs[:1]+segs[-1:]:
            n=r['t1']-r['t0']; c=r['cyc']; tot=sum(c)
            print(f"  w{w} b{r['b']} qt{r['qt']} tiles {n} start {(r['start']-t0)/1e3:.1f} dur {(r['end']-r['start'])/1e3:.1f}us cyc {tot} per tile "+' '.join(f'{x/max(n,1):.0f}' for x in c))
