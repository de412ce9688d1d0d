# HIP toolchain for the hip backend, without CMake's HIP language.
#
# Why not enable_language(HIP): CMake 3.25 requires <rocm root>/lib/cmake/hip-lang/
# hip-lang-config.cmake, and Debian 12 (ROCm 5.2: hipcc, libamdhip64-dev, rocm-device-libs)
# installs it under /usr/lib/x86_64-linux-gnu/cmake/hip-lang.  Pointing
# CMAKE_HIP_COMPILER_ROCM_ROOT at a symlinked root gets further but then breaks twice: the
# try_compile projects cannot find amd_comgr (multiarch path), and hip-lang adds
# `-isystem /usr/include`, which breaks libstdc++'s `#include_next <math.h>`.  Every workaround
# is another flag that differs between Debian and /opt/rocm installs.
#
# What we do instead: device sources (.hip, and the shared backends/gpu/*.cu) are compiled by
# `hipcc` through custom commands (hipcc knows its own clang, device libraries and ROCm root on
# every install), and the objects are linked into an ordinary SHARED library by the C/C++
# toolchain together with libamdhip64.  Host glue is plain C against hip_runtime_api.h.
#
# Inputs (cache):  POLYATTN_HIPCC, POLYATTN_HIP_ARCHITECTURES (default gfx908;gfx90a;gfx1030),
#                  ROCM_PATH (env or cache) as a search hint.
# Results:         POLYATTN_HIP_FOUND, POLYATTN_HIP_NOT_FOUND_REASON, POLYATTN_HIP_INCLUDE_DIR,
#                  POLYATTN_AMDHIP64_LIBRARY, POLYATTN_HIPBLAS_FOUND (+ _LIBRARY, _INCLUDE_DIR),
#                  POLYATTN_HIP_VERSION.
# Function:        polyattn_hip_add_device_sources(<target> SOURCES ... [INCLUDE_DIRS ...]
#                  [DEFINES ...] [OPTIONS ...])

set(POLYATTN_HIP_ARCHITECTURES "gfx908;gfx90a;gfx1030" CACHE STRING
    "AMD GPU targets the hip backend's code objects are built for (offload archs)")

set(_polyattn_rocm_hints)
foreach(_root "${ROCM_PATH}" "$ENV{ROCM_PATH}" "$ENV{HIP_PATH}" /opt/rocm)
  if(_root)
    list(APPEND _polyattn_rocm_hints "${_root}")
  endif()
endforeach()
set(_polyattn_rocm_bin_hints)
foreach(_root ${_polyattn_rocm_hints})
  list(APPEND _polyattn_rocm_bin_hints "${_root}/bin")
endforeach()

find_program(POLYATTN_HIPCC NAMES hipcc HINTS ${_polyattn_rocm_bin_hints}
             DOC "hipcc used to compile the hip backend's device code")
find_path(POLYATTN_HIP_INCLUDE_DIR NAMES hip/hip_runtime_api.h HINTS ${_polyattn_rocm_hints}
          PATH_SUFFIXES include DOC "Folder holding hip/hip_runtime_api.h")
find_library(POLYATTN_AMDHIP64_LIBRARY NAMES amdhip64 HINTS ${_polyattn_rocm_hints}
             PATH_SUFFIXES lib lib64 DOC "The HIP runtime (libamdhip64)")
# hipBLAS is optional: the unfused path uses the shared tiled GEMM without it.
find_library(POLYATTN_HIPBLAS_LIBRARY NAMES hipblas HINTS ${_polyattn_rocm_hints}
             PATH_SUFFIXES lib lib64 DOC "hipBLAS (optional)")
find_path(POLYATTN_HIPBLAS_INCLUDE_DIR NAMES hipblas/hipblas.h hipblas.h
          HINTS ${_polyattn_rocm_hints} PATH_SUFFIXES include DOC "hipBLAS headers (optional)")
mark_as_advanced(POLYATTN_HIPCC POLYATTN_HIP_INCLUDE_DIR POLYATTN_AMDHIP64_LIBRARY
                 POLYATTN_HIPBLAS_LIBRARY POLYATTN_HIPBLAS_INCLUDE_DIR)

set(POLYATTN_HIP_FOUND FALSE)
set(POLYATTN_HIP_NOT_FOUND_REASON "")
set(POLYATTN_HIPBLAS_FOUND FALSE)
if(NOT POLYATTN_HIPCC OR NOT EXISTS "${POLYATTN_HIPCC}")
  set(POLYATTN_HIP_NOT_FOUND_REASON "hipcc was not found (apt install hipcc, or set ROCM_PATH)")
elseif(NOT POLYATTN_HIP_INCLUDE_DIR)
  set(POLYATTN_HIP_NOT_FOUND_REASON "hip/hip_runtime_api.h was not found (apt install libamdhip64-dev)")
elseif(NOT POLYATTN_AMDHIP64_LIBRARY)
  set(POLYATTN_HIP_NOT_FOUND_REASON "libamdhip64 was not found (apt install libamdhip64-dev)")
elseif(NOT POLYATTN_HIP_ARCHITECTURES)
  set(POLYATTN_HIP_NOT_FOUND_REASON "POLYATTN_HIP_ARCHITECTURES is empty")
else()
  # hipcc may exist without device libraries (rocm-device-libs): compile one tiny kernel for
  # every requested target once, so AUTO skips cleanly instead of failing at build time.
  set(_probe_key "${POLYATTN_HIPCC}|${POLYATTN_HIP_ARCHITECTURES}")
  if(NOT POLYATTN_HIP_PROBE_KEY STREQUAL _probe_key)
    set(_dir "${CMAKE_BINARY_DIR}/CMakeFiles/polyattn_hip_probe")
    file(MAKE_DIRECTORY "${_dir}")
    file(WRITE "${_dir}/probe.hip"
      "#include <hip/hip_runtime.h>\n"
      "__global__ void probe_kernel(float *p) { p[threadIdx.x] = 1.0f; }\n")
    set(_arch_flags)
    foreach(_arch ${POLYATTN_HIP_ARCHITECTURES})
      list(APPEND _arch_flags "--offload-arch=${_arch}")
    endforeach()
    execute_process(
      COMMAND ${CMAKE_COMMAND} -E env HIP_PLATFORM=amd
              ${POLYATTN_HIPCC} -x hip -fPIC ${_arch_flags} -c probe.hip -o probe.o
      WORKING_DIRECTORY "${_dir}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
    if(_rc EQUAL 0)
      set(POLYATTN_HIP_PROBE_OK TRUE CACHE INTERNAL "")
    else()
      string(REGEX REPLACE "\n.*" "" _first_line "${_out}")
      set(POLYATTN_HIP_PROBE_OK FALSE CACHE INTERNAL "")
      set(POLYATTN_HIP_PROBE_ERROR "${_first_line}" CACHE INTERNAL "")
    endif()
    set(POLYATTN_HIP_PROBE_KEY "${_probe_key}" CACHE INTERNAL "")
  endif()
  if(POLYATTN_HIP_PROBE_OK)
    set(POLYATTN_HIP_FOUND TRUE)
  else()
    set(POLYATTN_HIP_NOT_FOUND_REASON "${POLYATTN_HIPCC} cannot compile for \
${POLYATTN_HIP_ARCHITECTURES} (rocm-device-libs missing?): ${POLYATTN_HIP_PROBE_ERROR}")
  endif()
endif()

if(POLYATTN_HIP_FOUND)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env HIP_PLATFORM=amd ${POLYATTN_HIPCC} --version
                  OUTPUT_VARIABLE _ver ERROR_QUIET)
  string(REGEX MATCH "HIP version: *([0-9.]+)" _m "${_ver}")
  set(POLYATTN_HIP_VERSION "${CMAKE_MATCH_1}")
  if(POLYATTN_HIPBLAS_LIBRARY AND POLYATTN_HIPBLAS_INCLUDE_DIR)
    set(POLYATTN_HIPBLAS_FOUND TRUE)
  endif()
endif()

# polyattn_hip_add_device_sources(<target> SOURCES <files> [INCLUDE_DIRS <dirs>]
#     [DEFINES <defs>] [OPTIONS <flags>])
# Compiles each source as HIP with hipcc for POLYATTN_HIP_ARCHITECTURES (one fat object per
# source: the host stub plus a bundle of code objects) and adds the objects to <target>.
function(polyattn_hip_add_device_sources target)
  cmake_parse_arguments(ARG "" "" "SOURCES;INCLUDE_DIRS;DEFINES;OPTIONS" ${ARGN})
  # Default visibility: the kernels library exports its extern "C" launchers.
  set(_flags -x hip -fPIC -std=c++17 -Wall -Wextra)
  if(POLYATTN_WERROR)
    list(APPEND _flags -Werror)
  endif()
  foreach(_arch ${POLYATTN_HIP_ARCHITECTURES})
    list(APPEND _flags "--offload-arch=${_arch}")
  endforeach()
  foreach(_dir ${ARG_INCLUDE_DIRS})
    list(APPEND _flags "-I${_dir}")
  endforeach()
  foreach(_def ${ARG_DEFINES})
    list(APPEND _flags "-D${_def}")
  endforeach()
  list(APPEND _flags ${ARG_OPTIONS})
  # Device code is always optimized: -O0 AMDGPU code is huge and slow to build.
  set(_opt "$<IF:$<CONFIG:Debug>,-O1;-g,-O3>")

  set(_objects)
  foreach(_src ${ARG_SOURCES})
    get_filename_component(_abs "${_src}" ABSOLUTE)
    file(RELATIVE_PATH _rel "${PROJECT_SOURCE_DIR}" "${_abs}")
    string(REGEX REPLACE "[^A-Za-z0-9_.]" "_" _stem "${_rel}")
    set(_obj "${CMAKE_CURRENT_BINARY_DIR}/hip_objects/${_stem}.o")
    add_custom_command(
      OUTPUT "${_obj}"
      COMMAND ${CMAKE_COMMAND} -E make_directory "${CMAKE_CURRENT_BINARY_DIR}/hip_objects"
      COMMAND ${CMAKE_COMMAND} -E env HIP_PLATFORM=amd
              ${POLYATTN_HIPCC} ${_flags} "${_opt}" -MD -MF "${_obj}.d" -MT "${_obj}"
              -c "${_abs}" -o "${_obj}"
      DEPENDS "${_abs}"
      DEPFILE "${_obj}.d"
      COMMENT "Building HIP object ${_rel} (${POLYATTN_HIP_ARCHITECTURES})"
      VERBATIM COMMAND_EXPAND_LISTS)
    list(APPEND _objects "${_obj}")
  endforeach()
  set_source_files_properties(${_objects} PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  target_sources(${target} PRIVATE ${_objects})
endfunction()
