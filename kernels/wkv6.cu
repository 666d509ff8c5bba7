// WKV6 (RWKV-6 "x060" time mixing) forward and backward, with initial state in and final state out.
//
// Pure CUDA: compiles on its own with `nvcc -c` (no torch headers); the torch binding is wkv6_op.cpp.
//
// Shapes (all contiguous, row-major):
//   r, k, v, y, gy, gr, gk, gv : (B, T, H, N) in F (float or __nv_bfloat16)
//   w, gw                      : (B, T, H, N) fp32, raw decay: d = exp(-exp(w)) is computed here in fp32
//   u                          : (H, N) fp32, the bonus of the current token
//   s0, sT, gsT, gs0           : (B, H, N, N) fp32, state indexed [key i, value j]; s0 / gsT may be null (zeros)
//   gu_part                    : (B, H, N) fp32, per-batch bonus gradient (the caller sums over B)
//
// Recurrence per (b, h), t = 1..T:
//   y_t[j] = sum_i r_t[i] * (u[i] * k_t[i] * v_t[j] + S_{t-1}[i, j])
//   S_t[i, j] = d_t[i] * S_{t-1}[i, j] + k_t[i] * v_t[j]
//
// Backward, with G_t = dL/dS_t (G_T = gsT) and G_{t-1} = d_t * G_t + r_t gy_t^T (outer product):
//   gr_t[i] = sum_j gy_t[j] S_{t-1}[i, j] + u[i] k_t[i] (gy_t . v_t)
//   gk_t[i] = sum_j G_t[i, j] v_t[j]      + u[i] r_t[i] (gy_t . v_t)
//   gv_t[j] = sum_i G_t[i, j] k_t[i]      + gy_t[j] * sum_i r_t[i] u[i] k_t[i]
//   gu[i]   = sum_t r_t[i] k_t[i] (gy_t . v_t)
//   gs0     = G_0
//   With l_t = log d_t = -exp(w_t): dL/dl_t[i] = d_t[i] sum_j G_t[i, j] S_{t-1}[i, j], which needs both N x N
//   matrices at once. Expanding S and G into their sums of outer products gives the same quantity from
//   per-step vectors only:
//     a_t[i] = r_t[i] * sum_j gy_t[j] S_{t-1}[i, j]   (t = 1..T),   a_{T+1}[i] = sum_j gsT[i, j] S_T[i, j]
//     b_t[i] = k_t[i] * sum_j G_t[i, j] v_t[j]
//     dL/dl_t = sum_{t < t' <= T+1} a_t' - sum_{t <= s <= T} b_s,      gw_t = dL/dl_t * (-exp(w_t)).
//
// Kernels (grid B*H, one block per head, state in registers, per-step vectors in shared memory):
//   forward            : N threads, thread j holds value column j of S.
//   backward_forward   : N threads, forward in time, thread i holds key row i of S -> gr, gu, a (into gw), a_{T+1}.
//   backward_reverse   : 2N threads, reverse in time; threads [0, N) hold row i of G -> gk, b, gw;
//                        threads [N, 2N) hold column j of G -> gv, gs0.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cstdint>

namespace {

constexpr int kHeadSize = 64;  // N: the only head size RWKV-6 checkpoints use

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename F> __device__ __forceinline__ F from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

__device__ __forceinline__ float decay_of(float w) { return expf(-expf(w)); }

template <typename F, int N>
__global__ void __launch_bounds__(N) wkv6_forward_kernel(
    int T, int H, const F* __restrict__ r, const F* __restrict__ k, const F* __restrict__ v,
    const float* __restrict__ w, const float* __restrict__ u, const float* __restrict__ s0,
    F* __restrict__ y, float* __restrict__ sT) {
  const int bh = blockIdx.x, b = bh / H, h = bh % H, j = threadIdx.x;
  __shared__ float sr[N], sk[N], sd[N], su[N];

  float s[N];  // S[:, j]
  const int64_t state_base = int64_t(bh) * N * N;
#pragma unroll
  for (int i = 0; i < N; ++i) s[i] = s0 ? s0[state_base + i * N + j] : 0.f;
  su[j] = u[h * N + j];

  const int64_t stride = int64_t(H) * N;  // one time step
  int64_t idx = int64_t(b) * T * stride + int64_t(h) * N + j;
  for (int t = 0; t < T; ++t, idx += stride) {
    __syncthreads();  // everyone is done reading the previous step's vectors
    sr[j] = to_f32(r[idx]);
    sk[j] = to_f32(k[idx]);
    sd[j] = decay_of(w[idx]);
    const float vj = to_f32(v[idx]);
    __syncthreads();

    float yj = 0.f;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float kv = sk[i] * vj;
      yj += sr[i] * (su[i] * kv + s[i]);
      s[i] = s[i] * sd[i] + kv;
    }
    y[idx] = from_f32<F>(yj);
  }
#pragma unroll
  for (int i = 0; i < N; ++i) sT[state_base + i * N + j] = s[i];
}

template <typename F, int N>
__global__ void __launch_bounds__(N) wkv6_backward_forward_kernel(
    int T, int H, const F* __restrict__ r, const F* __restrict__ k, const F* __restrict__ v,
    const float* __restrict__ w, const float* __restrict__ u, const float* __restrict__ s0,
    const F* __restrict__ gy, const float* __restrict__ gsT,
    F* __restrict__ gr, float* __restrict__ a, float* __restrict__ gu_part, float* __restrict__ a_last) {
  const int bh = blockIdx.x, b = bh / H, h = bh % H, i = threadIdx.x;
  __shared__ float sv[N], sg[N];

  float s[N];  // S[i, :]
  const int64_t state_base = int64_t(bh) * N * N;
#pragma unroll
  for (int j = 0; j < N; ++j) s[j] = s0 ? s0[state_base + i * N + j] : 0.f;
  const float ui = u[h * N + i];
  float gu_acc = 0.f;

  const int64_t stride = int64_t(H) * N;
  int64_t idx = int64_t(b) * T * stride + int64_t(h) * N + i;
  for (int t = 0; t < T; ++t, idx += stride) {
    __syncthreads();
    sv[i] = to_f32(v[idx]);
    sg[i] = to_f32(gy[idx]);
    const float ri = to_f32(r[idx]), ki = to_f32(k[idx]), di = decay_of(w[idx]);
    __syncthreads();

    float gy_dot_v = 0.f, gy_dot_s = 0.f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      gy_dot_v += sg[j] * sv[j];
      gy_dot_s += sg[j] * s[j];            // uses S_{t-1}
      s[j] = s[j] * di + ki * sv[j];       // becomes S_t
    }
    gr[idx] = from_f32<F>(ui * ki * gy_dot_v + gy_dot_s);
    a[idx] = ri * gy_dot_s;
    gu_acc += ri * ki * gy_dot_v;
  }
  gu_part[int64_t(bh) * N + i] = gu_acc;

  float last = 0.f;  // a_{T+1}: the final-state gradient read against S_T
  if (gsT) {
#pragma unroll
    for (int j = 0; j < N; ++j) last += gsT[state_base + i * N + j] * s[j];
  }
  a_last[int64_t(bh) * N + i] = last;
}

template <typename F, int N>
__global__ void __launch_bounds__(2 * N) wkv6_backward_reverse_kernel(
    int T, int H, const F* __restrict__ r, const F* __restrict__ k, const F* __restrict__ v,
    const float* __restrict__ w, const float* __restrict__ u, const F* __restrict__ gy,
    const float* __restrict__ gsT, const float* __restrict__ a_last,
    F* __restrict__ gk, F* __restrict__ gv, float* __restrict__ gw, float* __restrict__ gs0) {
  const int bh = blockIdx.x, b = bh / H, h = bh % H;
  const bool row = threadIdx.x < N;             // row half: gk and gw; column half: gv and gs0
  const int n = row ? threadIdx.x : threadIdx.x - N;
  __shared__ float sv[N], sg[N], sr[N], sk[N], sd[N], su[N];

  float g[N];  // row half: G[n, :]; column half: G[:, n]
  const int64_t state_base = int64_t(bh) * N * N;
#pragma unroll
  for (int m = 0; m < N; ++m) {
    g[m] = gsT ? gsT[state_base + (row ? n * N + m : m * N + n)] : 0.f;
  }
  const float un = u[h * N + n];
  if (!row) su[n] = un;
  float acc = row ? a_last[int64_t(bh) * N + n] : 0.f;  // running dL/dl, see the header

  const int64_t stride = int64_t(H) * N;
  int64_t idx = int64_t(b) * T * stride + int64_t(T - 1) * stride + int64_t(h) * N + n;
  for (int t = T - 1; t >= 0; --t, idx -= stride) {
    __syncthreads();
    const float rn = to_f32(r[idx]), kn = to_f32(k[idx]), gyn = to_f32(gy[idx]);
    const float en = expf(w[idx]), dn = expf(-en);
    if (row) {
      sv[n] = to_f32(v[idx]);
      sg[n] = gyn;
    } else {
      sr[n] = rn;
      sk[n] = kn;
      sd[n] = dn;
    }
    __syncthreads();

    if (row) {
      float gy_dot_v = 0.f, g_dot_v = 0.f;
#pragma unroll
      for (int m = 0; m < N; ++m) {
        gy_dot_v += sg[m] * sv[m];
        g_dot_v += g[m] * sv[m];           // uses G_t
        g[m] = g[m] * dn + rn * sg[m];     // becomes G_{t-1}
      }
      gk[idx] = from_f32<F>(g_dot_v + un * rn * gy_dot_v);
      acc -= kn * g_dot_v;                 // - b_t
      const float a_t = gw[idx];           // the forward sweep left a_t here
      gw[idx] = -acc * en;                 // dL/dw_t = dL/dl_t * (-exp(w_t))
      acc += a_t;
    } else {
      float g_dot_k = 0.f, ruk = 0.f;
#pragma unroll
      for (int m = 0; m < N; ++m) {
        ruk += sr[m] * su[m] * sk[m];
        g_dot_k += g[m] * sk[m];           // uses G_t
        g[m] = g[m] * sd[m] + sr[m] * gyn; // becomes G_{t-1}
      }
      gv[idx] = from_f32<F>(g_dot_k + ruk * gyn);
    }
  }
  if (!row) {
#pragma unroll
    for (int m = 0; m < N; ++m) gs0[state_base + m * N + n] = g[m];
  }
}

template <typename F>
cudaError_t forward_typed(int B, int T, int H, const void* r, const void* k, const void* v, const float* w,
                          const float* u, const float* s0, void* y, float* sT, cudaStream_t stream) {
  wkv6_forward_kernel<F, kHeadSize><<<B * H, kHeadSize, 0, stream>>>(
      T, H, static_cast<const F*>(r), static_cast<const F*>(k), static_cast<const F*>(v), w, u, s0,
      static_cast<F*>(y), sT);
  return cudaGetLastError();
}

template <typename F>
cudaError_t backward_typed(int B, int T, int H, const void* r, const void* k, const void* v, const float* w,
                           const float* u, const float* s0, const void* gy, const float* gsT, void* gr, void* gk,
                           void* gv, float* gw, float* gu_part, float* gs0, float* a_last, cudaStream_t stream) {
  const F* r_ = static_cast<const F*>(r);
  const F* k_ = static_cast<const F*>(k);
  const F* v_ = static_cast<const F*>(v);
  const F* gy_ = static_cast<const F*>(gy);
  wkv6_backward_forward_kernel<F, kHeadSize><<<B * H, kHeadSize, 0, stream>>>(
      T, H, r_, k_, v_, w, u, s0, gy_, gsT, static_cast<F*>(gr), gw, gu_part, a_last);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  wkv6_backward_reverse_kernel<F, kHeadSize><<<B * H, 2 * kHeadSize, 0, stream>>>(
      T, H, r_, k_, v_, w, u, gy_, gsT, a_last, static_cast<F*>(gk), static_cast<F*>(gv), gw, gs0);
  return cudaGetLastError();
}

}  // namespace

// Entry points for the binding. `bf16` selects __nv_bfloat16 for r, k, v, y and their gradients, else float.
// Head size is kHeadSize; the binding checks it. B * H == 0 is a no-op.
int wkv6_head_size() { return kHeadSize; }

cudaError_t wkv6_forward(bool bf16, int B, int T, int H, const void* r, const void* k, const void* v,
                         const float* w, const float* u, const float* s0, void* y, float* sT, cudaStream_t stream) {
  if (B * H == 0) return cudaSuccess;
  return bf16 ? forward_typed<__nv_bfloat16>(B, T, H, r, k, v, w, u, s0, y, sT, stream)
              : forward_typed<float>(B, T, H, r, k, v, w, u, s0, y, sT, stream);
}

// gw must hold nothing in particular on entry (it is used as scratch for a_t); a_last is (B, H, N) fp32 scratch.
cudaError_t wkv6_backward(bool bf16, int B, int T, int H, const void* r, const void* k, const void* v,
                          const float* w, const float* u, const float* s0, const void* gy, const float* gsT,
                          void* gr, void* gk, void* gv, float* gw, float* gu_part, float* gs0, float* a_last,
                          cudaStream_t stream) {
  if (B * H == 0) return cudaSuccess;
  return bf16 ? backward_typed<__nv_bfloat16>(B, T, H, r, k, v, w, u, s0, gy, gsT, gr, gk, gv, gw, gu_part, gs0,
                                              a_last, stream)
              : backward_typed<float>(B, T, H, r, k, v, w, u, s0, gy, gsT, gr, gk, gv, gw, gu_part, gs0, a_last,
                                      stream);
}
