import glob,os,sys,statistics as st
R=sys.argv[1]
names=['K ready','QK','exchange','softmax','V ready','PV']
for f in sorted(glob.glob(R+'/ph_*.txt')):
    last={}
    for l in open(f):
        if not l.startswith('PH '): continue
        x=list(map(int,l.split()[1:]))
        last[(x[0],x[3])]=x
    print('##',os.path.basename(f))
    if not last: print('no PH lines'); continue
    tiles=sorted({k[1] for k in last if k[1]>=0})
    print('| tile | blocks | '+' | '.join(names)+' | sum |'); print('|---'*(len(names)+3)+'|')
    for t in tiles:
        if t > 12 and t % 8: continue
        rows=[v[4:] for k,v in last.items() if k[1]==t]
        med=[st.median([r[j] for r in rows if r[j]>=0] or [0]) for j in range(6)]
        print('| %d | %d | %s | %d |'%(t,len(rows),' | '.join('%d'%m for m in med),sum(med)))
    ends=[v for k,v in last.items() if k[1]==-1]
    print('start->first mark median %d, last mark->end (epilogue) median %d'%(st.median([e[4] for e in ends]),st.median([e[5] for e in ends])))
