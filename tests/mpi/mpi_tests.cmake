# Tests that run under mpirun (label mpi), registered only when MPI is found
# (cmake/Dependencies.cmake). Each tests/mpi/test_<name>.cc is one executable
# dsv4_test_mpi_<name> with its own main (tests/mpi/mpi_main.h), registered once per rank count.
#
# mpirun on a CI machine: root (OpenMPI refuses root without the two ALLOW variables), more
# ranks than cores (oversubscribe), loopback only: the shared-memory and self transports
# (btl self,vader; single-copy off, since containers forbid the ptrace-based CMA), no UCX.
set(DSV4_MPI_ENV
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  OMPI_MCA_rmaps_base_oversubscribe=1
  OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
  OMP_NUM_THREADS=1)

# dsv4_mpi_executable(name LIBS...): tests/mpi/test_<name>.cc -> dsv4_test_mpi_<name>
function(dsv4_mpi_executable name)
  set(target dsv4_test_mpi_${name})
  add_executable(${target} ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_${name}.cc)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${target} PRIVATE ${ARGN} dsv4_comm GTest::gtest dsv4_flags)
endfunction()

# dsv4_mpi_test(test_name np target args...): `mpirun -np np target args...`
function(dsv4_mpi_test test_name np target)
  add_test(NAME ${test_name}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${target}>
            ${MPIEXEC_POSTFLAGS} ${ARGN})
  set_tests_properties(${test_name} PROPERTIES LABELS mpi ENVIRONMENT "${DSV4_MPI_ENV}" TIMEOUT 120
                       PROCESSORS ${np})
endfunction()

dsv4_mpi_executable(collectives)
dsv4_mpi_test(mpi.collectives_np2 2 dsv4_test_mpi_collectives)
dsv4_mpi_test(mpi.collectives_np4 4 dsv4_test_mpi_collectives)

# model/backend_sharded: sharded logits == unsharded logits (tests/mpi/test_sharded.cc).
dsv4_mpi_executable(sharded dsv4_model)
dsv4_mpi_test(mpi.sharded_np2 2 dsv4_test_mpi_sharded)
dsv4_mpi_test(mpi.sharded_np4 4 dsv4_test_mpi_sharded)

# `mpirun ... dsv4 forward|generate --tp --ep` through the binary: this test launches mpirun
# itself (tests/mpi/test_cli.cc), so it runs as a plain process with the mpirun environment.
add_executable(dsv4_test_mpi_cli ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_cli.cc)
target_include_directories(dsv4_test_mpi_cli PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(dsv4_test_mpi_cli PRIVATE dsv4_model GTest::gtest GTest::gtest_main dsv4_flags)
add_dependencies(dsv4_test_mpi_cli dsv4)
target_compile_definitions(dsv4_test_mpi_cli PRIVATE DSV4_BINARY="$<TARGET_FILE:dsv4>"
  DSV4_MPIEXEC="${MPIEXEC_EXECUTABLE}")
add_test(NAME mpi.cli COMMAND dsv4_test_mpi_cli)
set_tests_properties(mpi.cli PROPERTIES LABELS mpi ENVIRONMENT "${DSV4_MPI_ENV}" TIMEOUT 300)

# comm/nccl_comm (CUDA builds with NCCL): np 1 is the GPU check's one-rank run through the NCCL
# path; np 2 needs two devices (skips with the reason otherwise). Labels mpi and gpu.
if(DSV4_HAVE_NCCL)
  dsv4_mpi_executable(nccl CUDA::cudart)
  dsv4_mpi_test(mpi.nccl_np1 1 dsv4_test_mpi_nccl)
  dsv4_mpi_test(mpi.nccl_np2 2 dsv4_test_mpi_nccl)
  set_tests_properties(mpi.nccl_np1 mpi.nccl_np2 PROPERTIES LABELS "mpi;gpu")
  # The sharded model on GPU ranks over NCCL (tests/mpi/test_sharded_cuda.cc): np 1 runs the
  # model through the NCCL path on one device, np 2 needs two.
  dsv4_mpi_executable(sharded_cuda dsv4_model CUDA::cudart)
  dsv4_mpi_test(mpi.sharded_cuda_np1 1 dsv4_test_mpi_sharded_cuda)
  dsv4_mpi_test(mpi.sharded_cuda_np2 2 dsv4_test_mpi_sharded_cuda)
  set_tests_properties(mpi.sharded_cuda_np1 mpi.sharded_cuda_np2 PROPERTIES LABELS "mpi;gpu")
endif()
