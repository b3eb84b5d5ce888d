// The SIMD packet of Eigen for a scalar type, for the few reference kernels written with
// Eigen's packet primitives (Eigen::internal::pload / pmadd / predux ...): the indexer's
// scoring tiles, the few-rows GEMM, the Hadamard row tiles. Internal to reference/.
//   Packet<T>   the widest packet type Eigen uses for T with the build's flags (AVX2: 8 floats)
//   kPacket<T>  its number of lanes
#pragma once

#include <cmath>

#include <Eigen/Core>

namespace dsv4::ref {

template <class T>
using Packet = typename Eigen::internal::packet_traits<T>::type;
template <class T>
constexpr int kPacket = Eigen::internal::unpacket_traits<Packet<T>>::size;

// Scalar a * b + c rounded as Eigen's pmadd on packets: one fused rounding where the build has
// FMA, a multiply and an add otherwise. For scalar tails that must give the bits of their
// packet loops (mHC), and that GCC's default -ffp-contract=fast would otherwise fuse or not
// as it pleases.
template <class T>
T madd(T a, T b, T c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

}  // namespace dsv4::ref
