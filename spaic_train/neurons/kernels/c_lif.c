/* C CPU kernels for the plain LIF / IF sequence, alone or driven through a batch norm: forward and BPTT backward
 * over [T, N] float32.
 *
 * The same equations, chunking and backward as numba_lif.py / numba_bn_lif.py (read their docstrings first);
 * compiled once per machine by the system C compiler (c_lif.py) and called through ctypes.  Why a second CPU
 * kernel: numba's runtime (LLVM, its typing system) costs ~120 MB of resident memory per process, which for a
 * small network is more than its whole training; this library costs a few MB.
 *
 * Batch norm (bn_*): the membrane's drive is x * A[c] + B[c] per channel c = (j / inner) % C of neuron j (inner:
 * the memory stride of the channel dim in neurons), so the normalised current is never stored.
 *
 * Threads: the caller asks for `nparts` parts (one per thread); run_team hands them out.  Where c_lif.py found the
 * OpenMP runtime torch runs on, the parts run on torch's own thread team (use_openmp_team): after a torch op that
 * team's threads spin-wait for more work for milliseconds, so threads of our own would share the cores with
 * spinning ones (measured: the fused batch norm + LIF forward of the conv benchmark gained 1.3x from a second
 * core instead of ~1.9x).  Otherwise POSIX threads are started for the call (tens of microseconds).  Each part
 * writes only its own neurons and its own per-part rows whichever thread runs it; per-channel sums are summed per
 * part, then over parts by the caller in a fixed order: results do not depend on the threads except through that
 * last float64 sum's grouping by part.
 *
 * Bitwise: the membrane is fmaf(beta, v, drive) -- one rounding, as torch's CPU add(c, b, alpha=a) computes it
 * (and the numba kernels' LLVM fma); compile without -ffast-math so no other expression is reassociated.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HALF_PI 1.57079632679489661923f
#define INV_SQRT_2PI 0.39894228040143267794f
#define INV_SQRT_PI 0.56418958354775628695f
#define MAX_PARTS 256

enum { GO_NONE = 0, GO_FULL = 1, GO_SCALAR = 2 };

typedef struct {
    /* the sequence */
    const float *I, *V0;
    int64_t T, N, width, nparts;
    float beta, v_th, v_reset;
    int hard, detach, sg;
    float alpha;
    /* forward outputs */
    float *O, *VT, *Vseq;
    unsigned char *bits; /* the spikes again as 0/1 bytes (NULL: not wanted) */
    int store_v;
    /* backward */
    const float *gO, *gVT, *gVseq;
    int go_mode, has_gvt, has_gvseq;
    float go_scalar;
    float *dI, *dV0;
    /* batch norm: per-channel rows (A, B[, mean, invstd[, k2, k3]]) of C floats each; acc: nparts x 2 x C */
    const float *per_channel;
    int64_t inner, C;
    int batch_stats;
    double *acc;
    /* per-part scratch, allocated by the calling thread */
    char *scratch;
    size_t scratch_per_part;
} lif_args;

typedef void (*part_fn)(const lif_args *, int64_t);

/* ------------------------------------------------------------------------------------------------------ threads */
typedef void (*team_fn)(void *ctx, int64_t part);
/* libgomp's GOMP_parallel(fn, data, num_threads, flags): the entry `#pragma omp parallel` compiles to (GCC >= 4.9;
 * LLVM's and Intel's OpenMP runtimes export it too) */
typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
static gomp_parallel_fn gomp_parallel = NULL;

/* Run parts on the OpenMP team whose GOMP_parallel is `entry` from now on (NULL: POSIX threads). */
int use_openmp_team(void *entry) {
    gomp_parallel = (gomp_parallel_fn)entry;
    return 0;
}

typedef struct { team_fn fn; void *ctx; int64_t n, next; } team_work;

/* every thread of the team takes the next part until none is left: all parts run even where the team is smaller
 * than asked (a nested call gets a team of one) or a thread could not start */
static void team_body(void *arg) {
    team_work *w = (team_work *)arg;
    for (int64_t p; (p = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED)) < w->n;) w->fn(w->ctx, p);
}

static void *posix_body(void *arg) {
    team_body(arg);
    return NULL;
}

static void run_team(team_fn fn, void *ctx, int64_t n) {
    team_work w = {fn, ctx, n, 0};
    if (n <= 1 || !gomp_parallel) {
        pthread_t threads[MAX_PARTS];
        int started[MAX_PARTS];
        for (int64_t p = 1; p < n && p < MAX_PARTS; p++)
            started[p] = pthread_create(&threads[p], NULL, posix_body, &w) == 0;
        team_body(&w);
        for (int64_t p = 1; p < n && p < MAX_PARTS; p++)
            if (started[p]) pthread_join(threads[p], NULL);
        return;
    }
    gomp_parallel(team_body, &w, (unsigned)(n < MAX_PARTS ? n : MAX_PARTS), 0);
}

static void surrogate_row(const float *h, float v_th, float alpha, int sg, float *out, int64_t W) {
    int64_t k;
    if (sg == 0) { /* atan */
        float a = alpha * HALF_PI, c = alpha * 0.5f;
        for (k = 0; k < W; k++) { float y = a * (h[k] - v_th); out[k] = c / (1.0f + y * y); }
    } else if (sg == 1) { /* sigmoid */
        for (k = 0; k < W; k++) { float s = 1.0f / (1.0f + expf(-alpha * (h[k] - v_th))); out[k] = alpha * s * (1.0f - s); }
    } else if (sg == 2) { /* fast_sigmoid */
        for (k = 0; k < W; k++) { float y = 1.0f + alpha * fabsf(h[k] - v_th); out[k] = 1.0f / (y * y); }
    } else if (sg == 3) { /* rectangle */
        for (k = 0; k < W; k++) out[k] = fabsf(h[k] - v_th) < alpha ? 1.0f : 0.0f;
    } else if (sg == 4) { /* gaussian */
        float c = INV_SQRT_2PI / alpha, e = -0.5f / (alpha * alpha);
        for (k = 0; k < W; k++) { float x = h[k] - v_th; out[k] = expf(x * x * e) * c; }
    } else if (sg == 5) { /* triangle */
        float c = 1.0f / (alpha * alpha);
        for (k = 0; k < W; k++) out[k] = fmaxf(alpha - fabsf(h[k] - v_th), 0.0f) * c;
    } else if (sg == 6) { /* erf */
        float c = alpha * INV_SQRT_PI;
        for (k = 0; k < W; k++) { float y = alpha * (h[k] - v_th); out[k] = expf(-y * y) * c; }
    } else { /* piecewise_quadratic */
        float a2 = alpha * alpha;
        for (k = 0; k < W; k++) out[k] = fmaxf(alpha - a2 * fabsf(h[k] - v_th), 0.0f);
    }
}

/* chan[k]: channel of neuron j0 + k, counted up from j0's (no division per neuron: the chunk is walked in memory
 * order, where the channel changes every `inner` neurons and wraps after C); rows[r * width + k] =
 * per_channel[r * C + chan[k]] for r < nrows. */
static void channel_rows(const lif_args *a, int64_t j0, int64_t W, int64_t *chan, int nrows, float *rows) {
    int64_t within = j0 % a->inner, c = (j0 / a->inner) % a->C;
    for (int64_t k = 0; k < W; k++) {
        chan[k] = c;
        if (++within == a->inner) {
            within = 0;
            if (++c == a->C) c = 0;
        }
    }
    for (int r = 0; r < nrows; r++)
        for (int64_t k = 0; k < W; k++) rows[r * a->width + k] = a->per_channel[r * a->C + chan[k]];
}

/* One step of neurons k < W from the drive row: v is updated and reset; Ot[k] receives the pre-reset membrane H
 * (write_h) or the spike.  The four loops keep every branch out of the inner loop (so it vectorises). */
static void step_row(const float *drive, int64_t W, float *restrict v, float beta, float v_th, float v_reset,
                     int hard, int write_h, float *restrict Ot) {
    int64_t k;
    if (write_h && hard) {
        for (k = 0; k < W; k++) { float h = fmaf(beta, v[k], drive[k]); Ot[k] = h; v[k] = h >= v_th ? v_reset : h; }
    } else if (write_h) {
        for (k = 0; k < W; k++) { float h = fmaf(beta, v[k], drive[k]); Ot[k] = h; v[k] = h >= v_th ? h - v_th : h; }
    } else if (hard) {
        for (k = 0; k < W; k++) {
            float h = fmaf(beta, v[k], drive[k]);
            Ot[k] = h >= v_th ? 1.0f : 0.0f;
            v[k] = h >= v_th ? v_reset : h;
        }
    } else {
        for (k = 0; k < W; k++) {
            float h = fmaf(beta, v[k], drive[k]);
            Ot[k] = h >= v_th ? 1.0f : 0.0f;
            v[k] = h >= v_th ? h - v_th : h;
        }
    }
}

/* All T steps of neurons j0 .. j0+W-1 from the membrane v[:W] (left at V_T); the drive is I (A == NULL) or
 * I * A + B, computed a row at a time into D.  out[t * ostride + k] receives the pre-reset membrane H (write_h) or
 * the spike (and, forward, bits[t * N + j0 + k] the spike as a byte when wanted); Vseq[t * N + j0 + k] the
 * post-reset membrane (store_v). */
static void integrate_chunk(const lif_args *a, int64_t j0, int64_t W, const float *A, const float *B, float *D,
                            float *v, float *out, int64_t ostride, int write_h, int store_v) {
    unsigned char *bits_out = write_h ? NULL : a->bits;
    for (int64_t t = 0; t < a->T; t++) {
        const float *It = a->I + t * a->N + j0;
        float *Ot = out + t * ostride;
        if (A) {
            for (int64_t k = 0; k < W; k++) D[k] = fmaf(It[k], A[k], B[k]);
            It = D;
        }
        step_row(It, W, v, a->beta, a->v_th, a->v_reset, a->hard, write_h, Ot);
        if (bits_out) {
            unsigned char *bt = bits_out + t * a->N + j0;
            for (int64_t k = 0; k < W; k++) bt[k] = Ot[k] != 0.0f;
        }
        if (store_v) memcpy(a->Vseq + t * a->N + j0, v, (size_t)W * sizeof(float));
    }
}

/* One step back: out[k] = dL/dI[t] (dL/d drive); u becomes beta * out.  X = kS S + g' (kH (H - v_reset) + kT):
 * S + (H - v_reset) g' (hard), S (hard, detached), v_th g' (soft), 0 (soft, detached). */
static void bptt_row(const lif_args *a, const float *Ht, const float *Gt, const float *gOt, float *u, float *out,
                     int64_t W) {
    const float kS = a->hard ? 1.0f : 0.0f, kH = (a->hard && !a->detach) ? 1.0f : 0.0f;
    const float kT = (!a->hard && !a->detach) ? a->v_th : 0.0f, beta = a->beta, v_th = a->v_th;
    const float v_reset = a->v_reset;
    for (int64_t k = 0; k < W; k++) {
        float h = Ht[k], d = Gt[k];
        float spiked = h >= v_th ? 1.0f : 0.0f;
        float dh = u[k] * (1.0f - kS * spiked - d * (kH * (h - v_reset) + kT)) + gOt[k] * d;
        out[k] = dh;
        u[k] = beta * dh;
    }
}

/* [first, end) chunks of part p */
static void part_chunks(const lif_args *a, int64_t p, int64_t *first, int64_t *end) {
    int64_t nchunks = (a->N + a->width - 1) / a->width, per = (nchunks + a->nparts - 1) / a->nparts;
    *first = p * per;
    *end = (p + 1) * per < nchunks ? (p + 1) * per : nchunks;
}

static int64_t chunk_width(const lif_args *a, int64_t j0) {
    return (a->N < j0 + a->width ? a->N : j0 + a->width) - j0;
}

/* forward: O (and bits, Vseq), VT; with per_channel (rows A, B) the batch-norm drive */
static void forward_part(const lif_args *a, int64_t p) {
    float *base = (float *)(a->scratch + p * a->scratch_per_part);
    float *v = base, *D = base + 3 * a->width, *A = NULL, *B = NULL;
    int64_t *chan = (int64_t *)(base + 4 * a->width);
    if (a->per_channel) { A = base + a->width; B = base + 2 * a->width; }
    int64_t c0, c1;
    part_chunks(a, p, &c0, &c1);
    for (int64_t c = c0; c < c1; c++) {
        int64_t j0 = c * a->width, W = chunk_width(a, j0);
        if (a->per_channel) channel_rows(a, j0, W, chan, 2, A);
        memcpy(v, a->V0 + j0, (size_t)W * sizeof(float));
        integrate_chunk(a, j0, W, A, B, D, v, a->O + j0, a->N, 0, a->store_v);
        memcpy(a->VT + j0, v, (size_t)W * sizeof(float));
    }
}

/* backward: dI (dX), dV0; with per_channel (rows A, B, mean, invstd) also acc[p][0 / 1][c]: sums of dL/d drive
 * and dL/d drive * x_hat, and dX = dL/d drive (batch_stats: the caller's bn_input_grad finishes it) or A dL/d drive */
static void backward_part(const lif_args *a, int64_t p) {
    const int64_t T = a->T, N = a->N, width = a->width;
    float *base = (float *)(a->scratch + p * a->scratch_per_part);
    float *H = base, *G = base + T * width, *v = base + 2 * T * width, *u = v + width, *go_row = u + width;
    float *D = go_row + width, *rows = D + width; /* rows: A, B, mean, invstd */
    double *sd = (double *)(rows + 4 * width), *sdx = sd + width;
    int64_t *chan = (int64_t *)(sdx + width);
    const int bn = a->per_channel != NULL;
    const float *A = bn ? rows : NULL, *B = bn ? rows + width : NULL, *M = rows + 2 * width, *R = rows + 3 * width;
    double *acc = bn ? a->acc + p * 2 * a->C : NULL;
    for (int64_t k = 0; k < width; k++) go_row[k] = a->go_mode == GO_SCALAR ? a->go_scalar : 0.0f;
    if (bn) for (int64_t c = 0; c < 2 * a->C; c++) acc[c] = 0.0;
    int64_t c0, c1;
    part_chunks(a, p, &c0, &c1);
    for (int64_t c = c0; c < c1; c++) {
        int64_t j0 = c * width, W = chunk_width(a, j0);
        if (bn) {
            channel_rows(a, j0, W, chan, 4, rows);
            for (int64_t k = 0; k < W; k++) sd[k] = sdx[k] = 0.0;
        }
        memcpy(v, a->V0 + j0, (size_t)W * sizeof(float));
        integrate_chunk(a, j0, W, A, B, D, v, H, width, 1, 0);
        for (int64_t t = 0; t < T; t++) surrogate_row(H + t * width, a->v_th, a->alpha, a->sg, G + t * width, W);
        for (int64_t k = 0; k < W; k++) u[k] = a->has_gvt ? a->gVT[j0 + k] : 0.0f;
        for (int64_t t = T - 1; t >= 0; t--) {
            if (a->has_gvseq) {
                const float *gv = a->gVseq + t * N + j0;
                for (int64_t k = 0; k < W; k++) u[k] += gv[k];
            }
            const float *gOt = a->go_mode == GO_FULL ? a->gO + t * N + j0 : go_row;
            float *dIt = a->dI + t * N + j0;
            if (!bn) {
                bptt_row(a, H + t * width, G + t * width, gOt, u, dIt, W);
                continue;
            }
            bptt_row(a, H + t * width, G + t * width, gOt, u, D, W);
            const float *Xt = a->I + t * N + j0;
            if (a->batch_stats) memcpy(dIt, D, (size_t)W * sizeof(float));
            else for (int64_t k = 0; k < W; k++) dIt[k] = A[k] * D[k];
            for (int64_t k = 0; k < W; k++) {
                float dh = D[k];
                sd[k] += dh;
                sdx[k] += dh * ((Xt[k] - M[k]) * R[k]);
            }
        }
        memcpy(a->dV0 + j0, u, (size_t)W * sizeof(float));
        if (bn)
            for (int64_t k = 0; k < W; k++) { acc[chan[k]] += sd[k]; acc[a->C + chan[k]] += sdx[k]; }
    }
}

/* acc[p][0 / 1][c]: part p's sums of x and x^2 over channel c (float64) */
static void stats_part(const lif_args *a, int64_t p) {
    double *base = (double *)(a->scratch + p * a->scratch_per_part);
    double *s = base, *q = base + a->width, *acc = a->acc + p * 2 * a->C;
    for (int64_t c = 0; c < 2 * a->C; c++) acc[c] = 0.0;
    int64_t c0, c1;
    part_chunks(a, p, &c0, &c1);
    for (int64_t c = c0; c < c1; c++) {
        int64_t j0 = c * a->width, W = chunk_width(a, j0);
        for (int64_t k = 0; k < W; k++) s[k] = q[k] = 0.0;
        for (int64_t t = 0; t < a->T; t++) {
            const float *Xt = a->I + t * a->N + j0;
            for (int64_t k = 0; k < W; k++) { double x = (double)Xt[k]; s[k] += x; q[k] += x * x; }
        }
        int64_t within = j0 % a->inner, ch = (j0 / a->inner) % a->C;
        for (int64_t k = 0; k < W; k++) {
            acc[ch] += s[k];
            acc[a->C + ch] += q[k];
            if (++within == a->inner) {
                within = 0;
                if (++ch == a->C) ch = 0;
            }
        }
    }
}

/* in place: dX = A (dX - k2 - x_hat k3), x_hat = (X - mean) invstd; per_channel rows: A, mean, invstd, k2, k3 */
static void input_grad_part(const lif_args *a, int64_t p) {
    float *rows = (float *)(a->scratch + p * a->scratch_per_part);
    int64_t *chan = (int64_t *)(rows + 5 * a->width);
    const float *A = rows, *M = rows + a->width, *R = rows + 2 * a->width, *K2 = rows + 3 * a->width;
    const float *K3 = rows + 4 * a->width;
    int64_t c0, c1;
    part_chunks(a, p, &c0, &c1);
    for (int64_t c = c0; c < c1; c++) {
        int64_t j0 = c * a->width, W = chunk_width(a, j0);
        channel_rows(a, j0, W, chan, 5, rows);
        for (int64_t t = 0; t < a->T; t++) {
            const float *Xt = a->I + t * a->N + j0;
            float *dXt = a->dI + t * a->N + j0;
            for (int64_t k = 0; k < W; k++) dXt[k] = A[k] * (dXt[k] - K2[k] - (Xt[k] - M[k]) * R[k] * K3[k]);
        }
    }
}

typedef struct { const lif_args *a; part_fn fn; } lif_job;

static void run_lif_part(void *ctx, int64_t p) {
    const lif_job *job = (const lif_job *)ctx;
    job->fn(job->a, p);
}

/* Allocates each part's scratch (here, in the calling thread: per-thread malloc arenas would keep their pages) and
 * runs the parts on the team.  Returns 0, or 1 when the scratch could not be allocated. */
static int run_parts(lif_args *a, part_fn fn, size_t scratch_per_part) {
    int64_t n = a->nparts < MAX_PARTS ? a->nparts : MAX_PARTS;
    a->nparts = n;
    a->scratch_per_part = (scratch_per_part + 63) / 64 * 64;
    a->scratch = (char *)malloc(a->scratch_per_part * (size_t)n);
    if (!a->scratch) return 1;
    lif_job job = {a, fn};
    run_team(run_lif_part, &job, n);
    free(a->scratch);
    return 0;
}

static size_t forward_scratch(int64_t width) { return (size_t)width * (4 * sizeof(float) + sizeof(int64_t)); }

static size_t backward_scratch(int64_t T, int64_t width) {
    return (size_t)width * ((2 * T + 8) * sizeof(float) + 2 * sizeof(double) + sizeof(int64_t));
}

int lif_forward(const float *I, const float *V0, float *O, unsigned char *bits, float *VT, float *Vseq, int store_v,
                float beta, float v_th, float v_reset, int hard, int64_t T, int64_t N, int64_t width, int64_t nparts) {
    lif_args a = {0};
    a.I = I; a.V0 = V0; a.O = O; a.bits = bits; a.VT = VT; a.Vseq = Vseq; a.store_v = store_v; a.beta = beta;
    a.v_th = v_th; a.v_reset = v_reset; a.hard = hard; a.T = T; a.N = N; a.width = width; a.nparts = nparts;
    return run_parts(&a, forward_part, forward_scratch(width));
}

int lif_backward(const float *I, const float *V0, const float *gO, int go_mode, float go_scalar, const float *gVT,
                 int has_gvt, const float *gVseq, int has_gvseq, float *dI, float *dV0, float beta, float v_th,
                 float v_reset, float alpha, int sg, int hard, int detach, int64_t T, int64_t N, int64_t width,
                 int64_t nparts) {
    lif_args a = {0};
    a.I = I; a.V0 = V0; a.gO = gO; a.go_mode = go_mode; a.go_scalar = go_scalar; a.gVT = gVT; a.has_gvt = has_gvt;
    a.gVseq = gVseq; a.has_gvseq = has_gvseq; a.dI = dI; a.dV0 = dV0; a.beta = beta; a.v_th = v_th;
    a.v_reset = v_reset; a.alpha = alpha; a.sg = sg; a.hard = hard; a.detach = detach; a.T = T; a.N = N;
    a.width = width; a.nparts = nparts;
    return run_parts(&a, backward_part, backward_scratch(T, width));
}

/* acc: nparts x 2 x C float64 (sums of x, x^2 per part and channel) */
int bn_stats(const float *X, int64_t inner, int64_t C, double *acc, int64_t T, int64_t N, int64_t width,
             int64_t nparts) {
    lif_args a = {0};
    a.I = X; a.inner = inner; a.C = C; a.acc = acc; a.T = T; a.N = N; a.width = width; a.nparts = nparts;
    return run_parts(&a, stats_part, (size_t)width * 2 * sizeof(double));
}

/* affine: rows A, B (C floats each) */
int bn_lif_forward(const float *X, const float *V0, const float *affine, int64_t inner, int64_t C, float *O,
                   unsigned char *bits, float *VT, float *Vseq, int store_v, float beta, float v_th, float v_reset,
                   int hard, int64_t T, int64_t N, int64_t width, int64_t nparts) {
    lif_args a = {0};
    a.I = X; a.V0 = V0; a.per_channel = affine; a.inner = inner; a.C = C; a.O = O; a.bits = bits; a.VT = VT;
    a.Vseq = Vseq; a.store_v = store_v; a.beta = beta; a.v_th = v_th; a.v_reset = v_reset; a.hard = hard;
    a.T = T; a.N = N; a.width = width; a.nparts = nparts;
    return run_parts(&a, forward_part, forward_scratch(width));
}

/* per_channel: rows A, B, mean, invstd; acc: nparts x 2 x C float64 (sums of dL/d drive and dL/d drive * x_hat) */
int bn_lif_backward(const float *X, const float *V0, const float *per_channel, int64_t inner, int64_t C,
                    const float *gO, int go_mode, float go_scalar, const float *gVT, int has_gvt, const float *gVseq,
                    int has_gvseq, float *dX, float *dV0, double *acc, int batch_stats, float beta, float v_th,
                    float v_reset, float alpha, int sg, int hard, int detach, int64_t T, int64_t N, int64_t width,
                    int64_t nparts) {
    lif_args a = {0};
    a.I = X; a.V0 = V0; a.per_channel = per_channel; a.inner = inner; a.C = C; a.gO = gO; a.go_mode = go_mode;
    a.go_scalar = go_scalar; a.gVT = gVT; a.has_gvt = has_gvt; a.gVseq = gVseq; a.has_gvseq = has_gvseq; a.dI = dX;
    a.dV0 = dV0; a.acc = acc; a.batch_stats = batch_stats; a.beta = beta; a.v_th = v_th; a.v_reset = v_reset;
    a.alpha = alpha; a.sg = sg; a.hard = hard; a.detach = detach; a.T = T; a.N = N; a.width = width;
    a.nparts = nparts;
    return run_parts(&a, backward_part, backward_scratch(T, width));
}

/* per_channel: rows A, mean, invstd, k2, k3 */
int bn_input_grad(const float *X, float *dX, const float *per_channel, int64_t inner, int64_t C, int64_t T,
                  int64_t N, int64_t width, int64_t nparts) {
    lif_args a = {0};
    a.I = X; a.dI = dX; a.per_channel = per_channel; a.inner = inner; a.C = C; a.T = T; a.N = N; a.width = width;
    a.nparts = nparts;
    return run_parts(&a, input_grad_part, (size_t)width * (5 * sizeof(float) + sizeof(int64_t)));
}

/* ------------------------------------------------------------------------------------------------------ max pool
 * Gradient of a 2-d max pool (dilation 1, floor mode) from its input: each window's gradient goes to the first
 * element in scan order that is strictly greater than the running maximum, which starts at -inf (a NaN always
 * wins, the last of several) -- torch's rule, so the result equals autograd's max_pool2d backward bit for bit.  The input is float32
 * (`values`) or 0/1 spikes as bytes (`bits`: the first 1, else the window's first element).  No argmax indices;
 * where the windows tile the input, no zero fill either.  Strides in elements, dims N, C, H, W.  Planes (n, c) are
 * split between the threads; channels-last inputs (channel stride 1 in the input and its gradient) go through
 * pool_part_cl instead, which scans each window once for all channels at a time. */
typedef struct {
    const unsigned char *bits;
    const float *values;
    const float *gy;
    float *gx;
    const int64_t *bs, *ys, *xs; /* strides of bits, gy, gx */
    int64_t N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, nparts;
    int tiled; /* windows tile the input exactly: every gx element is written once, no zero fill */
    int channels_last; /* channel stride 1 in the input and in gx: pool_part_cl, images split between the threads */
    float *best;       /* pool_part_cl's scratch: C values per part */
    int32_t *won;
} pool_args;

/* the input rows [lo, hi) of output row o: stride s, padding p, kernel k, clipped to the n input rows */
static inline void pool_window(int64_t o, int64_t s, int64_t p, int64_t k, int64_t n, int64_t *lo, int64_t *hi) {
    int64_t a = o * s - p, b = a + k;
    *lo = a < 0 ? 0 : a;
    *hi = b > n ? n : b;
}

/* A plane at a time (channels-first inputs).  Its window loops have the same header as pool_part_cl's on purpose:
 * pool_part_cl's channel-vectorised body run with one channel per plane is slower on planes (a channel loop per
 * window element and, for overlapping windows, an add to every window element instead of to the winner). */
static void pool_part(const pool_args *a, int64_t p) {
    int64_t planes = a->N * a->C, per = (planes + a->nparts - 1) / a->nparts;
    int64_t end = (p + 1) * per < planes ? (p + 1) * per : planes;
    for (int64_t q = p * per; q < end; q++) {
        int64_t n = q / a->C, c = q % a->C;
        const unsigned char *B = a->bits ? a->bits + n * a->bs[0] + c * a->bs[1] : NULL;
        const float *V = a->values ? a->values + n * a->bs[0] + c * a->bs[1] : NULL;
        const float *G = a->gy + n * a->ys[0] + c * a->ys[1];
        float *X = a->gx + n * a->xs[0] + c * a->xs[1];
        if (!a->tiled)
            for (int64_t h = 0; h < a->H; h++)
                for (int64_t w = 0; w < a->W; w++) X[h * a->xs[2] + w * a->xs[3]] = 0.0f;
        for (int64_t oh = 0; oh < a->OH; oh++) {
            int64_t h0, h1;
            pool_window(oh, a->sh, a->ph, a->kh, a->H, &h0, &h1);
            for (int64_t ow = 0; ow < a->OW; ow++) {
                int64_t w0, w1;
                pool_window(ow, a->sw, a->pw, a->kw, a->W, &w0, &w1);
                float g = G[oh * a->ys[2] + ow * a->ys[3]];
                int64_t bh = h0, bw = w0, found = 0;
                if (B) {
                    for (int64_t h = h0; h < h1 && !found; h++)
                        for (int64_t w = w0; w < w1; w++)
                            if (B[h * a->bs[2] + w * a->bs[3]]) { bh = h; bw = w; found = 1; break; }
                } else {
                    float best = -INFINITY;
                    for (int64_t h = h0; h < h1; h++)
                        for (int64_t w = w0; w < w1; w++) {
                            float val = V[h * a->bs[2] + w * a->bs[3]];
                            if (val > best || isnan(val)) { best = val; bh = h; bw = w; }
                        }
                }
                if (a->tiled) {
                    for (int64_t h = h0; h < h1; h++)
                        for (int64_t w = w0; w < w1; w++)
                            X[h * a->xs[2] + w * a->xs[3]] = (h == bh && w == bw) ? g : 0.0f;
                } else {
                    X[bh * a->xs[2] + bw * a->xs[3]] += g;
                }
            }
        }
    }
}

/* Channels last.  A plane at a time would touch one cache line per element (the next channel's value sits beside
 * it), so here each window position is read for all C channels at once, in loops over c that the compiler
 * vectorises: the running maximum (`best`) and the winning window element (`won`) per channel, then the gradient
 * written to every element of the window (tiled) or added to the winner (overlapping windows, after a zero fill).
 * Per element the gradients are summed in the same (oh, ow) order as pool_part, so both give the same bits.  Images
 * n are split between the threads (overlapping windows of one image never straddle two threads). */
static void pool_part_cl(const pool_args *a, int64_t p, float *best, int32_t *won) {
    int64_t per = (a->N + a->nparts - 1) / a->nparts, end = (p + 1) * per < a->N ? (p + 1) * per : a->N;
    const int64_t C = a->C, gc = a->ys[1];
    for (int64_t n = p * per; n < end; n++) {
        const unsigned char *B = a->bits ? a->bits + n * a->bs[0] : NULL;
        const float *V = a->values ? a->values + n * a->bs[0] : NULL;
        const float *G = a->gy + n * a->ys[0];
        float *X = a->gx + n * a->xs[0];
        if (!a->tiled)
            for (int64_t h = 0; h < a->H; h++)
                for (int64_t w = 0; w < a->W; w++) {
                    float *x = X + h * a->xs[2] + w * a->xs[3];
                    for (int64_t c = 0; c < C; c++) x[c] = 0.0f;
                }
        for (int64_t oh = 0; oh < a->OH; oh++) {
            int64_t h0, h1;
            pool_window(oh, a->sh, a->ph, a->kh, a->H, &h0, &h1);
            for (int64_t ow = 0; ow < a->OW; ow++) {
                int64_t w0, w1;
                pool_window(ow, a->sw, a->pw, a->kw, a->W, &w0, &w1);
                const float *g = G + oh * a->ys[2] + ow * a->ys[3];
                int32_t k = 0;
                if (B) {
                    for (int64_t c = 0; c < C; c++) won[c] = -1;
                    for (int64_t h = h0; h < h1; h++)
                        for (int64_t w = w0; w < w1; w++, k++) {
                            const unsigned char *b = B + h * a->bs[2] + w * a->bs[3];
                            for (int64_t c = 0; c < C; c++) won[c] = (won[c] < 0 && b[c]) ? k : won[c];
                        }
                    for (int64_t c = 0; c < C; c++) won[c] = won[c] < 0 ? 0 : won[c];
                } else {
                    for (int64_t c = 0; c < C; c++) { best[c] = -INFINITY; won[c] = 0; }
                    for (int64_t h = h0; h < h1; h++)
                        for (int64_t w = w0; w < w1; w++, k++) {
                            const float *v = V + h * a->bs[2] + w * a->bs[3];
                            for (int64_t c = 0; c < C; c++) {
                                float val = v[c];
                                int take = val > best[c] || val != val;
                                best[c] = take ? val : best[c];
                                won[c] = take ? k : won[c];
                            }
                        }
                }
                k = 0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++, k++) {
                        float *x = X + h * a->xs[2] + w * a->xs[3];
                        if (a->tiled)
                            for (int64_t c = 0; c < C; c++) x[c] = won[c] == k ? g[c * gc] : 0.0f;
                        else  /* + 0.0f leaves every value as it is (gx is never -0.0: a +0.0 fill, then sums) */
                            for (int64_t c = 0; c < C; c++) x[c] = x[c] + (won[c] == k ? g[c * gc] : 0.0f);
                    }
            }
        }
    }
}

static void run_pool_part(void *ctx, int64_t p) {
    const pool_args *a = (const pool_args *)ctx;
    if (a->channels_last)
        pool_part_cl(a, p, a->best + p * a->C, a->won + p * a->C);
    else
        pool_part(a, p);
}

/* bits (0/1 bytes) or values (float32), the other NULL; bs: their strides */
int max_pool_backward(const unsigned char *bits, const float *values, const int64_t *bs, const float *gy,
                      const int64_t *ys, float *gx, const int64_t *xs, int64_t N, int64_t C, int64_t H, int64_t W,
                      int64_t OH, int64_t OW, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                      int64_t nparts) {
    pool_args a = {bits, values, gy, gx, bs, ys, xs, N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, 0, 0, 0, NULL, NULL};
    if (nparts > MAX_PARTS) nparts = MAX_PARTS;
    if (nparts < 1) nparts = 1;
    a.nparts = nparts;
    a.tiled = kh == sh && kw == sw && ph == 0 && pw == 0 && OH * kh == H && OW * kw == W;
    a.channels_last = C > 1 && bs[1] == 1 && xs[1] == 1;
    if (a.channels_last) {
        a.best = malloc(sizeof(float) * (size_t)(nparts * C));
        a.won = malloc(sizeof(int32_t) * (size_t)(nparts * C));
        if (!a.best || !a.won) a.channels_last = 0; /* no scratch: the plane loop, same result */
    }
    run_team(run_pool_part, &a, nparts);
    free(a.best);
    free(a.won);
    return 0;
}
