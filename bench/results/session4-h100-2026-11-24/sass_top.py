import csv, sys, collections
rows=list(csv.reader(open(sys.argv[1])))
hdr=rows[1]; data=rows[2:]
ix={h:i for i,h in enumerate(hdr)}
stall_cols=[h for h in hdr if h.startswith('stall_') and 'Not Issued' not in h]
def num(x):
    try: return float(x.replace(',',''))
    except: return 0.0
tot=sum(num(r[ix['Warp Stall Sampling (All Samples)']]) for r in data)
print('total samples', tot, 'instructions', len(data))
# per opcode
op=collections.Counter(); opst=collections.defaultdict(collections.Counter)
for r in data:
    s=num(r[ix['Warp Stall Sampling (All Samples)']])
    o=r[ix['Source']].split()[0] if r[ix['Source']].split() else '?'
    if o.startswith('@'): o=r[ix['Source']].split()[1]
    o=o.split('.')[0]
    op[o]+=s
    for c in stall_cols: opst[o][c]+=num(r[ix[c]])
for o,s in op.most_common(14):
    top=', '.join('%s %.0f%%'%(c[6:],100*v/max(s,1)) for c,v in opst[o].most_common(3))
    print('%-10s %5.1f%%  %s'%(o,100*s/tot,top))
print()
# top instructions
idx=sorted(range(len(data)), key=lambda i:-num(data[i][ix['Warp Stall Sampling (All Samples)']]))
for i in idx[:int(sys.argv[2]) if len(sys.argv)>2 else 30]:
    r=data[i]; s=num(r[ix['Warp Stall Sampling (All Samples)']])
    st=sorted(((num(r[ix[c]]),c[6:]) for c in stall_cols), reverse=True)[:2]
    print('%5d %-6s %5.2f%% %-60s %s'%(i, r[ix['Address']][-5:], 100*s/tot, r[ix['Source']][:60], ' '.join('%s:%.0f'%(c,v) for v,c in st)))
