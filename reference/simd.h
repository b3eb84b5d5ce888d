// The SIMD packet of Eigen for a scalar type, for the few reference kernels written with
// Eigen's packet primitives (Eigen::internal::pload / pmadd / predux ...): the indexer's
// scoring tiles, the few-rows GEMM, the Hadamard row tiles. Internal to reference/.
//   Packet<T>   the widest packet type Eigen uses for T with the build's flags (AVX2: 8 floats)
//   kPacket<T>  its number of lanes
#pragma once

#include <Eigen/Core>

namespace dsv4::ref {

template <class T>
using Packet = typename Eigen::internal::packet_traits<T>::type;
template <class T>
constexpr int kPacket = Eigen::internal::unpacket_traits<Packet<T>>::size;

}  // namespace dsv4::ref
