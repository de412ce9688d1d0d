import glob,os,sys,statistics as st
R=sys.argv[1]
names=['K ready','QK','exchange','softmax','V ready','PV']
for f in sorted(glob.glob(R+'/ph_*.txt')):
    last={}; pe={}
    for l in open(f):
        if l.startswith('PE '):
            x=list(map(int,l.split()[1:])); pe[x[0]]=x; continue
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
    if pe:
        v=list(pe.values())
        med=lambda j: st.median([e[j] for e in v if e[j]>=0] or [-1])
        mx=lambda j: max([e[j] for e in v if e[j]>=0] or [-1])
        print('epilogue parts (median / max over blocks): merge %d / %d, staging %d / %d, store %d / %d'%(med(2),mx(2),med(3),mx(3),med(4),mx(4)))
        # critical path: per block, first + sum of deltas + end
    tot={}
    for (b,t),x in last.items():
        if t>=0: tot[b]=tot.get(b,0)+sum(y for y in x[4:] if y>=0)
    for b in tot:
        if b in pe: tot[b]+=sum(y for y in pe[b][2:] if y>=0)
    if tot: print('block totals: median %d, max %d cycles'%(st.median(tot.values()),max(tot.values())))
