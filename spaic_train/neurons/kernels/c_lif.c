/* C CPU kernels for the plain LIF / IF sequence: forward and BPTT backward over [T, N] float32.
 *
 * The same equations, chunking and backward as numba_lif.py (read its docstring first); compiled once per
 * machine by the system C compiler (c_lif.py) and called through ctypes.  Why a second CPU kernel: numba's
 * runtime (LLVM, its typing system) costs ~120 MB of resident memory per process, which for a small network
 * is more than its whole training; this library costs well under 1 MB.
 *
 * Threads: the caller asks for `nparts` parts (one per thread); part 0 runs on the calling thread, the
 * others on POSIX threads started for the call (tens of microseconds, negligible against a kernel call).
 * Each neuron is integrated by one thread and there are no sums across neurons: results do not depend on
 * the thread count.
 *
 * Bitwise: the membrane is fmaf(beta, v, I) -- one rounding, as torch's CPU add(c, b, alpha=a) computes it
 * (and the numba kernel's LLVM fma); compile without -ffast-math so no other expression is reassociated.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HALF_PI 1.57079632679489661923f
#define INV_SQRT_2PI 0.39894228040143267794f
#define INV_SQRT_PI 0.56418958354775628695f

enum { GO_NONE = 0, GO_FULL = 1, GO_SCALAR = 2 };

typedef struct {
    const float *I, *V0;
    float *O, *VT, *Vseq;
    unsigned char *bits; /* forward: the spikes again as 0/1 bytes (NULL: not wanted) */
    int store_v, hard;
    float beta, v_th, v_reset;
    const float *gO, *gVT, *gVseq;
    int go_mode, has_gvt, has_gvseq, detach, sg;
    float go_scalar, alpha;
    float *dI, *dV0;
    float *scratch; /* backward: nparts x (2 T width + 3 width) floats */
    int64_t T, N, width, nparts;
} lif_args;

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

/* All T steps of neurons j0 .. j0+W-1 from the membrane v[:W] (left at V_T).  out[t * ostride + k] receives
 * the pre-reset membrane H (write_h) or the spike (and bits[t * N + j0 + k] the spike as a byte, when wanted);
 * Vseq[t * N + j0 + k] the post-reset membrane (store_v). */
static void integrate_chunk(const lif_args *a, int64_t j0, int64_t W, float *v, float *out, int64_t ostride,
                            int write_h, int store_v) {
    unsigned char *bits_out = write_h ? NULL : a->bits;
    const float beta = a->beta, v_th = a->v_th, v_reset = a->v_reset;
    for (int64_t t = 0; t < a->T; t++) {
        const float *It = a->I + t * a->N + j0;
        float *Ot = out + t * ostride;
        for (int64_t k = 0; k < W; k++) {
            float h = fmaf(beta, v[k], It[k]);
            int s = h >= v_th;
            Ot[k] = write_h ? h : (s ? 1.0f : 0.0f);
            if (bits_out) bits_out[t * a->N + j0 + k] = (unsigned char)s;
            if (a->hard) v[k] = s ? v_reset : h;
            else v[k] = s ? h - v_th : h;
        }
        if (store_v) memcpy(a->Vseq + t * a->N + j0, v, (size_t)W * sizeof(float));
    }
}

typedef struct { const lif_args *a; int64_t part; int backward; } part_job;

static void forward_part(const lif_args *a, int64_t p) {
    int64_t nchunks = (a->N + a->width - 1) / a->width, per = (nchunks + a->nparts - 1) / a->nparts;
    float *v = a->scratch + p * a->width;
    int64_t cend = (p + 1) * per < nchunks ? (p + 1) * per : nchunks;
    for (int64_t c = p * per; c < cend; c++) {
        int64_t j0 = c * a->width, W = (a->N < j0 + a->width ? a->N : j0 + a->width) - j0;
        memcpy(v, a->V0 + j0, (size_t)W * sizeof(float));
        integrate_chunk(a, j0, W, v, a->O + j0, a->N, 0, a->store_v);
        memcpy(a->VT + j0, v, (size_t)W * sizeof(float));
    }
}

/* u = dL/dV[t]: dI[t] = gO[t] g' + u (1 - X), u[t-1] = gVseq[t-1] + beta dI[t] with X = kS S + g' (kH (H - v_reset)
 * + kT): S + (H - v_reset) g' (hard), S (hard, detached), v_th g' (soft), 0 (soft, detached). */
static void backward_part(const lif_args *a, int64_t p) {
    const int64_t T = a->T, N = a->N, width = a->width;
    const float kS = a->hard ? 1.0f : 0.0f, kH = (a->hard && !a->detach) ? 1.0f : 0.0f;
    const float kT = (!a->hard && !a->detach) ? a->v_th : 0.0f, beta = a->beta, v_th = a->v_th;
    float *base = a->scratch + p * (2 * T * width + 3 * width);
    float *H = base, *G = base + T * width, *v = base + 2 * T * width, *u = v + width, *go_row = u + width;
    for (int64_t k = 0; k < width; k++) go_row[k] = a->go_mode == GO_SCALAR ? a->go_scalar : 0.0f;
    int64_t nchunks = (N + width - 1) / width, per = (nchunks + a->nparts - 1) / a->nparts;
    int64_t cend = (p + 1) * per < nchunks ? (p + 1) * per : nchunks;
    for (int64_t c = p * per; c < cend; c++) {
        int64_t j0 = c * width, W = (N < j0 + width ? N : j0 + width) - j0;
        memcpy(v, a->V0 + j0, (size_t)W * sizeof(float));
        integrate_chunk(a, j0, W, v, H, width, 1, 0);
        for (int64_t t = 0; t < T; t++) surrogate_row(H + t * width, v_th, a->alpha, a->sg, G + t * width, W);
        for (int64_t k = 0; k < W; k++) u[k] = a->has_gvt ? a->gVT[j0 + k] : 0.0f;
        for (int64_t t = T - 1; t >= 0; t--) {
            if (a->has_gvseq) {
                const float *gv = a->gVseq + t * N + j0;
                for (int64_t k = 0; k < W; k++) u[k] += gv[k];
            }
            const float *Ht = H + t * width, *Gt = G + t * width;
            const float *gOt = a->go_mode == GO_FULL ? a->gO + t * N + j0 : go_row;
            float *dIt = a->dI + t * N + j0;
            for (int64_t k = 0; k < W; k++) {
                float h = Ht[k], d = Gt[k];
                float spiked = h >= v_th ? 1.0f : 0.0f;
                float dh = u[k] * (1.0f - kS * spiked - d * (kH * (h - a->v_reset) + kT)) + gOt[k] * d;
                dIt[k] = dh;
                u[k] = beta * dh;
            }
        }
        memcpy(a->dV0 + j0, u, (size_t)W * sizeof(float));
    }
}

static void *run_part(void *arg) {
    part_job *job = (part_job *)arg;
    if (job->backward) backward_part(job->a, job->part);
    else forward_part(job->a, job->part);
    return NULL;
}

/* Runs parts 1..nparts-1 on new threads and part 0 here; a thread that cannot start runs here too. */
static void run_parts(const lif_args *a, int backward) {
    int64_t n = a->nparts;
    pthread_t threads[256];
    part_job jobs[256];
    int started[256];
    if (n > 256) n = 256;
    for (int64_t p = 0; p < n; p++) { jobs[p].a = a; jobs[p].part = p; jobs[p].backward = backward; started[p] = 0; }
    for (int64_t p = 1; p < n; p++) started[p] = pthread_create(&threads[p], NULL, run_part, &jobs[p]) == 0;
    run_part(&jobs[0]);
    for (int64_t p = 1; p < n; p++) {
        if (started[p]) pthread_join(threads[p], NULL);
        else run_part(&jobs[p]);
    }
}

/* Returns 0 on success, 1 when the scratch could not be allocated. */
int lif_forward(const float *I, const float *V0, float *O, unsigned char *bits, float *VT, float *Vseq, int store_v,
                float beta, float v_th, float v_reset, int hard, int64_t T, int64_t N, int64_t width, int64_t nparts) {
    lif_args a = {0};
    a.I = I; a.V0 = V0; a.O = O; a.bits = bits; a.VT = VT; a.Vseq = Vseq; a.store_v = store_v; a.beta = beta;
    a.v_th = v_th;
    a.v_reset = v_reset; a.hard = hard; a.T = T; a.N = N; a.width = width; a.nparts = nparts;
    a.scratch = (float *)malloc((size_t)(nparts * width) * sizeof(float));
    if (!a.scratch) return 1;
    run_parts(&a, 0);
    free(a.scratch);
    return 0;
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
    a.scratch = (float *)malloc((size_t)(nparts * (2 * T * width + 3 * width)) * sizeof(float));
    if (!a.scratch) return 1;
    run_parts(&a, 1);
    free(a.scratch);
    return 0;
}
