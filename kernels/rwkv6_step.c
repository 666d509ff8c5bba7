/* One recurrent RWKV-6 step on the CPU, fp32: the arithmetic of rwkv_core.model._NumpyLayer.step for every layer,
 * then the output norm and head, in one call (rwkv_core/cpu_step.py loads it with ctypes, which lets go of the GIL
 * while it runs).
 *
 * Why C: at batch 1-4 the numpy step is all dispatch, about 35 small ops a layer at 1-3 us each, while the
 * arithmetic is about 0.25 M multiply-adds a layer (benchmarks/RESULTS.md, "Speed (issue 15)").
 *
 * Weights are one fp32 array, packed by rwkv_core/cpu_step.py in the order read by next_layer() below; matrices are
 * (in, out), row-major, so x @ W walks W row by row and the inner loop over `out` vectorizes.
 * Shapes: C channels, H heads of N (C = H * N), D mix LoRA width, DD decay LoRA width, F feed-forward width,
 * V vocabulary; state shift (L, 2, B, C) and wkv (L, B, H, N, N), as RWKVState.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    const float *maa_x, *maa_5, *maa_w1, *maa_w2;         /* (C), (5, C), (C, 5D), (5, D, C) */
    const float *decay, *decay_w1, *decay_w2, *u;          /* (C), (C, DD), (DD, C), (C) */
    const float *wk, *wv, *wr, *wg, *lnx_w, *lnx_b, *wo;   /* (C, C) x 4, (C) x 2, (C, C) */
    const float *f_maa_k, *f_maa_r, *f_key, *f_rec, *f_val; /* (C), (C), (C, F), (C, C), (F, C) */
} Layer;

static const float *take(const float **p, size_t n) {
    const float *at = *p;
    *p += n;
    return at;
}

static Layer next_layer(const float **p, int C, int D, int DD, int F) {
    Layer l;
    l.ln1_w = take(p, C); l.ln1_b = take(p, C); l.ln2_w = take(p, C); l.ln2_b = take(p, C);
    l.maa_x = take(p, C); l.maa_5 = take(p, 5 * C);
    l.maa_w1 = take(p, (size_t)C * 5 * D); l.maa_w2 = take(p, (size_t)5 * D * C);
    l.decay = take(p, C); l.decay_w1 = take(p, (size_t)C * DD); l.decay_w2 = take(p, (size_t)DD * C);
    l.u = take(p, C);
    l.wk = take(p, (size_t)C * C); l.wv = take(p, (size_t)C * C); l.wr = take(p, (size_t)C * C);
    l.wg = take(p, (size_t)C * C);
    l.lnx_w = take(p, C); l.lnx_b = take(p, C); l.wo = take(p, (size_t)C * C);
    l.f_maa_k = take(p, C); l.f_maa_r = take(p, C);
    l.f_key = take(p, (size_t)C * F); l.f_rec = take(p, (size_t)C * C); l.f_val = take(p, (size_t)F * C);
    return l;
}

/* Y (B, n_out) = X (B, n_in) @ W (n_in, n_out). Four rows of W at a time against four rows of X at a time: each
 * weight loaded serves four batch rows and each pass over Y adds four products (the loops vectorize over `o`). */
static void matmul(const float *restrict X, const float *restrict W, float *restrict Y, int B, int n_in,
                   int n_out) {
    memset(Y, 0, sizeof(float) * (size_t)B * n_out);
    int i = 0;
    for (; i + 4 <= n_in; i += 4) {
        const float *restrict w0 = W + (size_t)i * n_out, *restrict w1 = w0 + n_out;
        const float *restrict w2 = w1 + n_out, *restrict w3 = w2 + n_out;
        int b = 0;
        for (; b + 4 <= B; b += 4) {
            const float *x = X + (size_t)b * n_in + i;
            const float a0 = x[0], a1 = x[1], a2 = x[2], a3 = x[3];
            x += n_in;
            const float b0 = x[0], b1 = x[1], b2 = x[2], b3 = x[3];
            x += n_in;
            const float c0 = x[0], c1 = x[1], c2 = x[2], c3 = x[3];
            x += n_in;
            const float d0 = x[0], d1 = x[1], d2 = x[2], d3 = x[3];
            float *restrict ya = Y + (size_t)b * n_out, *restrict yb = ya + n_out;
            float *restrict yc = yb + n_out, *restrict yd = yc + n_out;
            for (int o = 0; o < n_out; o++) {
                const float v0 = w0[o], v1 = w1[o], v2 = w2[o], v3 = w3[o];
                ya[o] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3;
                yb[o] += b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3;
                yc[o] += c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3;
                yd[o] += d0 * v0 + d1 * v1 + d2 * v2 + d3 * v3;
            }
        }
        for (; b < B; b++) {
            const float *x = X + (size_t)b * n_in + i;
            const float x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3];
            float *restrict y = Y + (size_t)b * n_out;
            for (int o = 0; o < n_out; o++) y[o] += x0 * w0[o] + x1 * w1[o] + x2 * w2[o] + x3 * w3[o];
        }
    }
    for (; i < n_in; i++) {
        const float *restrict w0 = W + (size_t)i * n_out;
        for (int b = 0; b < B; b++) {
            const float x0 = X[(size_t)b * n_in + i];
            float *restrict y = Y + (size_t)b * n_out;
            for (int o = 0; o < n_out; o++) y[o] += x0 * w0[o];
        }
    }
}

/* out = (x - mean) / sqrt(var + eps) * w + b over n values (out may be x) */
static void norm(const float *x, const float *w, const float *b, float *out, int n, float eps) {
    float mean = 0.0f, var = 0.0f;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) { const float d = x[i] - mean; var += d * d; }
    const float inv = 1.0f / sqrtf(var / n + eps);
    for (int i = 0; i < n; i++) out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

static float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

/* One layer for B rows. x (B, C) is updated in place; sh_in/sh_out are this layer's shift (2, B, C), S_in/S_out its
 * state (B, H, N, N); t is scratch of rwkv6_step_scratch() * B floats. */
static void layer(const Layer *l, float *x, const float *sh_in, float *sh_out, const float *S_in, float *S_out,
                  int B, int C, int H, int N, int D, int DD, int F, float ln_eps, float gn_eps, float *t) {
    const size_t BC = (size_t)B * C;
    float *xa = t, *xx = xa + BC, *mix_in = xx + BC, *m1 = mix_in + BC, *mix = m1 + (size_t)B * 5 * D;
    float *xm = mix + BC;                                                 /* (5, B, C): w k v r g */
    float *k = xm + 5 * BC, *v = k + BC, *r = v + BC, *g = r + BC, *w = g + BC, *dd = w + BC;
    float *y = dd + (size_t)B * DD, *kf = y + BC, *rf = kf + (size_t)B * F;

    /* time mix */
    for (int b = 0; b < B; b++) norm(x + b * C, l->ln1_w, l->ln1_b, xa + b * C, C, ln_eps);
    memcpy(sh_out, xa, sizeof(float) * BC);
    for (size_t j = 0, b = 0; b < (size_t)B; b++) {
        for (int c = 0; c < C; c++, j++) {
            xx[j] = sh_in[j] - xa[j];
            mix_in[j] = xa[j] + xx[j] * l->maa_x[c];
        }
    }
    matmul(mix_in, l->maa_w1, m1, B, C, 5 * D);
    for (size_t j = 0; j < (size_t)B * 5 * D; j++) m1[j] = tanhf(m1[j]);
    for (int s = 0; s < 5; s++) {
        for (int b = 0; b < B; b++) {                     /* m1 row b holds the five mixes' LoRA inputs side by side */
            matmul(m1 + ((size_t)b * 5 + s) * D, l->maa_w2 + (size_t)s * D * C, mix + b * C, 1, D, C);
        }
        for (size_t j = 0, b = 0; b < (size_t)B; b++) {
            for (int c = 0; c < C; c++, j++) xm[s * BC + j] = xa[j] + xx[j] * (l->maa_5[s * C + c] + mix[j]);
        }
    }
    matmul(xm + 1 * BC, l->wk, k, B, C, C);
    matmul(xm + 2 * BC, l->wv, v, B, C, C);
    matmul(xm + 3 * BC, l->wr, r, B, C, C);
    matmul(xm + 4 * BC, l->wg, g, B, C, C);
    matmul(xm, l->decay_w1, dd, B, C, DD);
    for (size_t j = 0; j < (size_t)B * DD; j++) dd[j] = tanhf(dd[j]);
    matmul(dd, l->decay_w2, w, B, DD, C);

    /* wkv: y[j] = sum_i r[i] (S[i][j] + u[i] k[i] v[j]);  S'[i][j] = exp(-exp(w[i])) S[i][j] + k[i] v[j] */
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const size_t o = (size_t)b * C + h * N;
            const float *rh = r + o, *kh = k + o, *restrict vh = v + o, *wh = w + o, *uh = l->u + h * N;
            const float *Sh = S_in + ((size_t)b * H + h) * N * N;
            float *So = S_out + ((size_t)b * H + h) * N * N, *restrict yh = y + o;
            float ruk = 0.0f;
            for (int i = 0; i < N; i++) ruk += rh[i] * uh[i] * kh[i];
            for (int j = 0; j < N; j++) yh[j] = ruk * vh[j];
            for (int i = 0; i < N; i++) {
                const float ri = rh[i], ki = kh[i];
                const float decay = expf(-expf(l->decay[h * N + i] + wh[i]));
                const float *restrict Si = Sh + (size_t)i * N;
                float *restrict Soi = So + (size_t)i * N;
                for (int j = 0; j < N; j++) {
                    yh[j] += ri * Si[j];
                    Soi[j] = decay * Si[j] + ki * vh[j];
                }
            }
            norm(yh, l->lnx_w + h * N, l->lnx_b + h * N, yh, N, gn_eps);   /* group norm, a group per head */
        }
    }
    for (size_t j = 0; j < BC; j++) y[j] *= g[j] * sigmoid(g[j]);
    matmul(y, l->wo, mix, B, C, C);
    for (size_t j = 0; j < BC; j++) x[j] += mix[j];

    /* channel mix */
    float *xf = xa;
    for (int b = 0; b < B; b++) norm(x + b * C, l->ln2_w, l->ln2_b, xf + b * C, C, ln_eps);
    memcpy(sh_out + BC, xf, sizeof(float) * BC);
    for (size_t j = 0, b = 0; b < (size_t)B; b++) {
        for (int c = 0; c < C; c++, j++) {
            const float d = sh_in[BC + j] - xf[j];
            mix_in[j] = xf[j] + d * l->f_maa_k[c];
            xx[j] = xf[j] + d * l->f_maa_r[c];
        }
    }
    matmul(mix_in, l->f_key, kf, B, C, F);
    for (size_t j = 0; j < (size_t)B * F; j++) { const float z = kf[j] > 0.0f ? kf[j] : 0.0f; kf[j] = z * z; }
    matmul(xx, l->f_rec, rf, B, C, C);
    matmul(kf, l->f_val, mix, B, F, C);
    for (size_t j = 0; j < BC; j++) x[j] += sigmoid(rf[j]) * mix[j];
}

size_t rwkv6_step_scratch(int C, int D, int DD, int F) {
    return (size_t)(16 * C + 5 * D + DD + F);
}

/* Returns 0; -1 when the scratch could not be allocated or L is over 64; -2 when a token is not in [0, V). */
int rwkv6_step(const float *weights, int L, int C, int H, int N, int D, int DD, int F, int V, float ln_eps,
               float gn_eps, int B, const int64_t *tokens, const float *shift_in, const float *wkv_in,
               float *shift_out, float *wkv_out, float *logits) {
    if (L > 64) return -1;
    for (int b = 0; b < B; b++) {
        if (tokens[b] < 0 || tokens[b] >= V) return -2;
    }
    const size_t BC = (size_t)B * C, scratch = rwkv6_step_scratch(C, D, DD, F) * B;
    float *t = malloc(sizeof(float) * (scratch + 2 * BC));
    if (t == NULL) return -1;
    float *x = t + scratch, *xo = x + BC;
    Layer layers[64];
    const float *rest = weights;
    for (int i = 0; i < L; i++) layers[i] = next_layer(&rest, C, D, DD, F);
    const float *emb = rest, *ln_out_w = emb + (size_t)V * C, *ln_out_b = ln_out_w + C, *head = ln_out_b + C;

    for (int b = 0; b < B; b++) memcpy(x + b * C, emb + (size_t)tokens[b] * C, sizeof(float) * C);  /* ln0 in */
    for (int i = 0; i < L; i++) {
        layer(&layers[i], x, shift_in + i * 2 * BC, shift_out + i * 2 * BC, wkv_in + i * (size_t)B * H * N * N,
              wkv_out + i * (size_t)B * H * N * N, B, C, H, N, D, DD, F, ln_eps, gn_eps, t);
    }
    for (int b = 0; b < B; b++) norm(x + b * C, ln_out_w, ln_out_b, xo + b * C, C, ln_eps);
    matmul(xo, head, logits, B, C, V);
    free(t);
    return 0;
}
