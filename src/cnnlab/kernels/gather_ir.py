"""The LLVM IR of the gather path's two kernels (gather.py), written out as text: a convolution
and its weight gradient, each vectorized over filters, with each input value broadcast.

    conv:   out[k, p] = Σ_t Σ_c w[t, c, k] · xs[c·cs + base[p] + tap[t]]
    wgrad:  dw[t, c, k] = Σ_p xs[c·cs + base[p] + tap[t]] · dyt[p·ds + k]

The filters k come in vectors of V lanes, KV vectors (KV·V filters) per block kb; conv holds P
positions × KV vectors of sums in registers over all taps and channels, wgrad holds R channels ×
KV vectors over all positions. Both loops are bound by the fused multiply-adds: per step conv
loads KV weight vectors and broadcasts P input values for P·KV multiply-adds, wgrad loads KV
vectors of dy and broadcasts R input values for R·KV.
"""

from __future__ import annotations


def _fma_decl(lanes: int) -> str:
    vt = f"<{lanes} x float>"
    return f"declare {vt} @llvm.fma.v{lanes}f32({vt}, {vt}, {vt})"


def _attributes(lanes: int) -> str:
    return (f'attributes #0 = {{ nounwind "min-legal-vector-width"="{32 * lanes}" '
            f'"prefer-vector-width"="{32 * lanes}" }}')


def _broadcast(name: str, ptr: str, lanes: int) -> list[str]:
    """%{name}: the float at %ptr in every lane."""
    vt = f"<{lanes} x float>"
    return [f"  %{name}s = load float, ptr {ptr}, align 4",
            f"  %{name}i = insertelement {vt} poison, float %{name}s, i64 0",
            f"  %{name} = shufflevector {vt} %{name}i, {vt} poison, <{lanes} x i32> zeroinitializer"]


def conv_ir(lanes: int, kv: int, positions: int, offsets: tuple[int, ...]) -> str:
    """@gather_conv(xs, cs, bases, w, out, os, C, KB, count): for each filter block kb and block
    of P positions (bases padded to whole blocks with readable offsets), the sums over channels
    c and, inside, the T = len(offsets) taps (each channel's rows are read while in cache; the
    taps' offsets, u·Wp + v for a 3×3 window, are constants, so each load is a position's
    register plus a constant); w packed (KB, C, T, KV·V); out[k·os + p] written for p < count
    only, lane by lane."""
    vt, kl, P = f"<{lanes} x float>", kv * lanes, positions
    acc = [(p, v) for p in range(P) for v in range(kv)]
    lines = [
        _fma_decl(lanes),
        "define void @gather_conv(ptr noalias %xs, i64 %cs, ptr noalias %bases, ptr noalias %w,"
        " ptr noalias %out, i64 %os, i64 %C, i64 %KB, i64 %count) #0 {",
        "entry:",
        f"  %cnt1 = add i64 %count, {P - 1}",
        f"  %NB = udiv i64 %cnt1, {P}",
    ]
    lines += [
        "  br label %kbloop",
        "kbloop:",
        "  %kb = phi i64 [0, %entry], [%kbn, %kbnext]",
        "  %kbC = mul i64 %kb, %C",
        "  br label %bloop",
        "bloop:",
        "  %b = phi i64 [0, %kbloop], [%bn, %bnext]",
        f"  %p0 = mul i64 %b, {P}",
    ]
    for p in range(P):
        lines += [f"  %bi{p} = add i64 %p0, {p}",
                  f"  %bq{p} = getelementptr i64, ptr %bases, i64 %bi{p}",
                  f"  %base{p} = load i64, ptr %bq{p}, align 8"]
    lines += ["  br label %cloop", "cloop:", "  %c = phi i64 [0, %bloop], [%cn, %cloop]"]
    T = len(offsets)
    lines += [f"  %c{p}_{v}_0 = phi {vt} [zeroinitializer, %bloop], [%c{p}_{v}_{T}, %cloop]"
              for p, v in acc]
    lines += ["  %wrow = add i64 %kbC, %c", f"  %wat = mul i64 %wrow, {T * kl}",
              "  %xcoff = mul i64 %c, %cs", "  %xc = getelementptr float, ptr %xs, i64 %xcoff"]
    lines += [f"  %xb{p} = getelementptr float, ptr %xc, i64 %base{p}" for p in range(P)]
    lines += _conv_taps(lanes, kv, P, offsets)
    lines += ["  %cn = add i64 %c, 1", "  %cdone = icmp eq i64 %cn, %C",
              "  br i1 %cdone, label %st0, label %cloop"]
    lines += _conv_stores(lanes, kv, P, T)
    lines += ["bnext:", "  %bn = add i64 %b, 1", "  %bdone = icmp eq i64 %bn, %NB",
              "  br i1 %bdone, label %kbnext, label %bloop",
              "kbnext:", "  %kbn = add i64 %kb, 1", "  %kbdone = icmp eq i64 %kbn, %KB",
              "  br i1 %kbdone, label %exit, label %kbloop",
              "exit:", "  ret void", "}", _attributes(lanes)]
    return "\n".join(lines)


def _conv_taps(lanes: int, kv: int, positions: int, offsets: tuple[int, ...]) -> list[str]:
    """The channel loop's body: per tap t, KV weight vectors loaded, each position's input value
    at offsets[t] broadcast, P·KV fused multiply-adds c{p}_{v}_{t+1} = fma(x, w, c{p}_{v}_{t})."""
    vt, lines = f"<{lanes} x float>", []
    for t, off in enumerate(offsets):
        for v in range(kv):
            lines += [f"  %wi{t}_{v} = add i64 %wat, {(t * kv + v) * lanes}",
                      f"  %wq{t}_{v} = getelementptr float, ptr %w, i64 %wi{t}_{v}",
                      f"  %w{t}_{v} = load {vt}, ptr %wq{t}_{v}, align 4"]
        for p in range(positions):
            lines += [f"  %xq{t}_{p} = getelementptr float, ptr %xb{p}, i64 {off}"]
            lines += _broadcast(f"x{t}_{p}", f"%xq{t}_{p}", lanes)
            lines += [f"  %c{p}_{v}_{t + 1} = call {vt} @llvm.fma.v{lanes}f32({vt} %x{t}_{p}, "
                      f"{vt} %w{t}_{v}, {vt} %c{p}_{v}_{t})" for v in range(kv)]
    return lines


def _conv_stores(lanes: int, kv: int, positions: int, taps: int) -> list[str]:
    """Position p's KV·V sums, if p0 + p < count, each stored to out[(kb·KV·V + k)·os + p0 + p]."""
    lines, kl = [], kv * lanes
    for p in range(positions):
        done = f"st{p + 1}" if p + 1 < positions else "bnext"
        lines += [f"st{p}:", f"  %pp{p} = add i64 %p0, {p}", f"  %in{p} = icmp ult i64 %pp{p}, %count",
                  f"  br i1 %in{p}, label %sd{p}, label %bnext", f"sd{p}:",
                  f"  %kbase{p} = mul i64 %kb, {kl}"]
        for v in range(kv):
            for lane in range(lanes):
                e = f"{p}_{v}_{lane}"
                lines += [f"  %e{e} = extractelement <{lanes} x float> %c{p}_{v}_{taps}, i64 {lane}",
                          f"  %k{e} = add i64 %kbase{p}, {v * lanes + lane}",
                          f"  %ko{e} = mul i64 %k{e}, %os",
                          f"  %o{e} = add i64 %ko{e}, %pp{p}",
                          f"  %oq{e} = getelementptr float, ptr %out, i64 %o{e}",
                          f"  store float %e{e}, ptr %oq{e}, align 4"]
        lines.append(f"  br label %{done}")
    return lines


def wgrad_ir(lanes: int, kv: int, rows: int) -> str:
    """@gather_wgrad(xs, cs, bases, taps, T, dyt, ds, dw, C, CW, KB, count): for each filter block
    kb, tap t and block of R channels (C of them, a multiple of R), the sums over positions
    p < count; dw (T, CW, KB·KV·V) written whole for these C channels, a vector per (t, c, kv).
    Each sum runs over the positions in order whatever R, so callers may take a layer's channels
    in blocks of any sizes and get the same bits."""
    vt, kl, R = f"<{lanes} x float>", kv * lanes, rows
    acc = [(r, v) for r in range(R) for v in range(kv)]
    lines = [
        _fma_decl(lanes),
        "define void @gather_wgrad(ptr noalias %xs, i64 %cs, ptr noalias %bases, ptr noalias %taps,"
        " i64 %T, ptr noalias %dyt, i64 %ds, ptr noalias %dw, i64 %C, i64 %CW, i64 %KB,"
        " i64 %count) #0 {",
        "entry:",
        f"  %CB = udiv i64 %C, {R}",
        f"  %K = mul i64 %KB, {kl}",
        "  br label %kbloop",
        "kbloop:",
        "  %kb = phi i64 [0, %entry], [%kbn, %kbnext]",
        f"  %k0 = mul i64 %kb, {kl}",
        "  %dyk = getelementptr float, ptr %dyt, i64 %k0",
        "  br label %tloop",
        "tloop:",
        "  %t = phi i64 [0, %kbloop], [%tn, %tnext]",
        "  %tq = getelementptr i64, ptr %taps, i64 %t",
        "  %toff = load i64, ptr %tq, align 8",
        "  %xt = getelementptr float, ptr %xs, i64 %toff",
        "  br label %cbloop",
        "cbloop:",
        "  %cb = phi i64 [0, %tloop], [%cbn, %cbnext]",
        f"  %c0 = mul i64 %cb, {R}",
    ]
    for r in range(R):
        lines += [f"  %cr{r} = add i64 %c0, {r}", f"  %xo{r} = mul i64 %cr{r}, %cs",
                  f"  %xr{r} = getelementptr float, ptr %xt, i64 %xo{r}"]
    lines += ["  br label %ploop", "ploop:", "  %p = phi i64 [0, %cbloop], [%pn, %ploop]"]
    lines += [f"  %a{r}_{v} = phi {vt} [zeroinitializer, %cbloop], [%a{r}_{v}n, %ploop]"
              for r, v in acc]
    lines += ["  %bq = getelementptr i64, ptr %bases, i64 %p", "  %base = load i64, ptr %bq, align 8",
              "  %dyo = mul i64 %p, %ds", "  %dyp = getelementptr float, ptr %dyk, i64 %dyo"]
    for v in range(kv):
        lines += [f"  %dq{v} = getelementptr float, ptr %dyp, i64 {v * lanes}",
                  f"  %d{v} = load {vt}, ptr %dq{v}, align 4"]
    for r in range(R):
        lines += [f"  %xq{r} = getelementptr float, ptr %xr{r}, i64 %base"]
        lines += _broadcast(f"x{r}", f"%xq{r}", lanes)
        lines += [f"  %a{r}_{v}n = call {vt} @llvm.fma.v{lanes}f32({vt} %x{r}, {vt} %d{v}, "
                  f"{vt} %a{r}_{v})" for v in range(kv)]
    lines += ["  %pn = add i64 %p, 1", "  %pdone = icmp eq i64 %pn, %count",
              "  br i1 %pdone, label %store, label %ploop", "store:",
              "  %tC = mul i64 %t, %CW"]
    lines += _wgrad_stores(lanes, kv, R)
    lines += ["  br label %cbnext", "cbnext:", "  %cbn = add i64 %cb, 1",
              "  %cbdone = icmp eq i64 %cbn, %CB", "  br i1 %cbdone, label %tnext, label %cbloop",
              "tnext:", "  %tn = add i64 %t, 1", "  %tdone = icmp eq i64 %tn, %T",
              "  br i1 %tdone, label %kbnext, label %tloop",
              "kbnext:", "  %kbn = add i64 %kb, 1", "  %kbdone = icmp eq i64 %kbn, %KB",
              "  br i1 %kbdone, label %exit, label %kbloop",
              "exit:", "  ret void", "}", _attributes(lanes)]
    return "\n".join(lines)


def _wgrad_stores(lanes: int, kv: int, rows: int) -> list[str]:
    """After the last position: each channel's KV sums stored to dw[(t·C + c)·K + k0 + v·V …]."""
    vt, lines = f"<{lanes} x float>", []
    for r in range(rows):
        lines += [f"  %row{r} = add i64 %tC, %cr{r}", f"  %rk{r} = mul i64 %row{r}, %K",
                  f"  %ro{r} = add i64 %rk{r}, %k0"]
        for v in range(kv):
            lines += [f"  %so{r}_{v} = add i64 %ro{r}, {v * lanes}",
                      f"  %sq{r}_{v} = getelementptr float, ptr %dw, i64 %so{r}_{v}",
                      f"  store {vt} %a{r}_{v}n, ptr %sq{r}_{v}, align 4"]
    return lines
