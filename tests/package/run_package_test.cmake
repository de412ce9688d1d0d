# The install as a consumer sees it: installs the build into a fresh prefix, then builds and
# runs tests/package/consumer.c twice, once through find_package(polyattn) and once through
# `pkg-config --cflags --libs polyattn` (with --static for a static build).
#
#   cmake -DBUILD_DIR=<build> -DWORK_DIR=<scratch> -DSOURCE_DIR=<tests/package>
#         -DC_COMPILER=<cc> -DGENERATOR=<generator> -DSTATIC=<ON|OFF>
#         "-DBACKENDS=<gpu backends built>" -P run_package_test.cmake

cmake_minimum_required(VERSION 3.24) # policies of this project (IN_LIST) in script mode

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${ARGN}\n${out}")
  endif()
  message(STATUS "${what}: ok")
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

string(REPLACE "|" ";" BACKENDS "${BACKENDS}")
set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
run("install into ${prefix}" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")

# The library folder as installed (lib, lib64 or a multiarch folder).
file(GLOB_RECURSE config "${prefix}/*/polyattnConfig.cmake")
file(GLOB_RECURSE pc "${prefix}/*/polyattn.pc")
if(NOT config OR NOT pc)
  message(FATAL_ERROR "the install lacks polyattnConfig.cmake or polyattn.pc: '${config}' '${pc}'")
endif()
get_filename_component(pcdir "${pc}" DIRECTORY)
get_filename_component(libdir "${pcdir}" DIRECTORY)
foreach(file polyattnConfigVersion.cmake polyattnTargets.cmake)
  if(NOT EXISTS "${libdir}/cmake/polyattn/${file}")
    message(FATAL_ERROR "the install lacks ${libdir}/cmake/polyattn/${file}")
  endif()
endforeach()

# 1. find_package(polyattn)
run("configure the find_package consumer" "${CMAKE_COMMAND}"
    -S "${SOURCE_DIR}/consumer" -B "${WORK_DIR}/cmake-consumer" -G "${GENERATOR}"
    "-DCMAKE_C_COMPILER=${C_COMPILER}" "-DCMAKE_PREFIX_PATH=${prefix}"
    "-DCONSUMER_SOURCE=${SOURCE_DIR}/consumer.c" -DCMAKE_BUILD_TYPE=Release)
string(REGEX MATCH "polyattn [0-9.]+: [^\n]*" summary "${last_output}")
message(STATUS "${summary}")
run("build the find_package consumer" "${CMAKE_COMMAND}" --build "${WORK_DIR}/cmake-consumer")
run("run the find_package consumer" "${WORK_DIR}/cmake-consumer/consumer" ${BACKENDS})
message(STATUS "${last_output}")

# 2. pkg-config
find_program(PKG_CONFIG NAMES pkg-config pkgconf)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config was not found (Debian: apt install pkg-config)")
endif()
set(ENV{PKG_CONFIG_PATH} "${pcdir}")
set(static_flag "")
if(STATIC)
  set(static_flag --static)
endif()
run("pkg-config ${static_flag} --cflags --libs polyattn"
    "${PKG_CONFIG}" ${static_flag} --cflags --libs polyattn)
string(STRIP "${last_output}" flags)
message(STATUS "flags: ${flags}")
separate_arguments(flags UNIX_COMMAND "${flags}")
run("build the pkg-config consumer" "${C_COMPILER}" -std=c11 -Wall -Wextra -Werror
    "${SOURCE_DIR}/consumer.c" -o "${WORK_DIR}/pkg-config-consumer" ${flags} -lm)
# pkg-config gives no run path: the shared library is found through LD_LIBRARY_PATH.
run("run the pkg-config consumer" "${CMAKE_COMMAND}" -E env "LD_LIBRARY_PATH=${libdir}"
    "${WORK_DIR}/pkg-config-consumer" ${BACKENDS})
message(STATUS "${last_output}")

# A static build must not leave the consumers depending on a shared libpolyattn.
if(STATIC)
  foreach(exe "${WORK_DIR}/cmake-consumer/consumer" "${WORK_DIR}/pkg-config-consumer")
    file(GET_RUNTIME_DEPENDENCIES EXECUTABLES "${exe}" RESOLVED_DEPENDENCIES_VAR deps
         UNRESOLVED_DEPENDENCIES_VAR unresolved)
    foreach(dep IN LISTS deps unresolved)
      if(dep MATCHES "libpolyattn")
        message(FATAL_ERROR "${exe} of a static build needs ${dep}")
      endif()
    endforeach()
  endforeach()
endif()

# A shared build's core refuses a module of another version: a stand-in module that reports
# version 9.9.9 (and one that reports none), found through POLYATTN_MODULE_PATH, must be
# refused with that reason, and the host backend runs on.
if(NOT STATIC AND "opencl" IN_LIST BACKENDS)
  foreach(kind other none)
    set(dir "${WORK_DIR}/module-${kind}")
    file(MAKE_DIRECTORY "${dir}")
    if(kind STREQUAL "other")
      set(version_fn "const char *polyattn_backend_version(void) { return \"9.9.9\"; }\n")
      set(expect "is version 9.9.9, but this libpolyattn is version")
    else()
      set(version_fn "")
      set(expect "is of an unknown version, but this libpolyattn is version")
    endif()
    file(WRITE "${dir}/module.c" "${version_fn}"
         "const void *polyattn_backend_entry(void) { return 0; }\n")
    run("build a stand-in module (${kind} version)" "${C_COMPILER}" -shared -fPIC
        "${dir}/module.c" -o "${dir}/libpolyattn_opencl.so")
    run("run the consumer with that module" "${CMAKE_COMMAND}" -E env
        "POLYATTN_MODULE_PATH=${dir}" "${WORK_DIR}/cmake-consumer/consumer" opencl)
    if(NOT last_output MATCHES "opencl: compiled 1, 0 device\\(s\\): module [^\n]*${expect}")
      message(FATAL_ERROR "the core did not refuse the ${kind}-version module:\n${last_output}")
    endif()
    message(STATUS "refused as expected")
  endforeach()
endif()
