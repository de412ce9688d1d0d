# `cmake --install`: the core, every backend module beside it (the core loads modules from
# its own folder), the public and interop headers, the command-line tool, and what consumers
# find the library with: polyattnConfig.cmake (+ version file, imported target
# polyattn::polyattn) and polyattn.pc.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(POLYATTN_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/polyattn)

install(TARGETS polyattn EXPORT polyattnTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
# Modules (shared build only: in a static build they are inside libpolyattn.a).  The kernels
# library of the hip module is loaded by that module from the same folder.
foreach(module polyattn_opencl polyattn_cuda polyattn_hip polyattn_hip_kernels)
  if(TARGET ${module})
    get_target_property(_type ${module} TYPE)
    if(_type STREQUAL "SHARED_LIBRARY")
      install(TARGETS ${module} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
    endif()
  endif()
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/include/polyattn.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
foreach(backend cuda hip opencl)
  if(TARGET polyattn_${backend})
    install(FILES ${PROJECT_SOURCE_DIR}/include/polyattn_${backend}.h
            DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
endforeach()
if(TARGET polyattn_cli)
  install(TARGETS polyattn_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  set_target_properties(polyattn_cli PROPERTIES
    INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
endif()

# ---- CMake package: find_package(polyattn) -> polyattn::polyattn -----------------------
set_target_properties(polyattn PROPERTIES EXPORT_NAME polyattn)
install(EXPORT polyattnTargets NAMESPACE polyattn:: DESTINATION ${POLYATTN_INSTALL_CMAKEDIR})
# Packages whose targets a static libpolyattn.a links (Threads from the core itself).
get_property(POLYATTN_CONFIG_PACKAGES GLOBAL PROPERTY POLYATTN_STATIC_PACKAGES)
if(POLYATTN_LIBRARY_TYPE STREQUAL "STATIC")
  list(PREPEND POLYATTN_CONFIG_PACKAGES Threads)
endif()
list(REMOVE_DUPLICATES POLYATTN_CONFIG_PACKAGES)
set(POLYATTN_CONFIG_BACKENDS host ${POLYATTN_BACKENDS_BUILT})
list(REMOVE_ITEM POLYATTN_CONFIG_BACKENDS "")
string(REPLACE ";" ", " POLYATTN_PC_BACKENDS "${POLYATTN_CONFIG_BACKENDS}")
if(POLYATTN_LIBRARY_TYPE STREQUAL "STATIC")
  set(POLYATTN_CONFIG_STATIC TRUE)
else()
  set(POLYATTN_CONFIG_STATIC FALSE)
endif()
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/polyattnConfig.cmake.in
  ${PROJECT_BINARY_DIR}/polyattnConfig.cmake
  INSTALL_DESTINATION ${POLYATTN_INSTALL_CMAKEDIR})
# Before 1.0 a minor release may change the ABI, so only the same minor version matches.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_compatibility SameMinorVersion)
else()
  set(_compatibility SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/polyattnConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${_compatibility})
install(FILES ${PROJECT_BINARY_DIR}/polyattnConfig.cmake
              ${PROJECT_BINARY_DIR}/polyattnConfigVersion.cmake
        DESTINATION ${POLYATTN_INSTALL_CMAKEDIR})

# ---- pkg-config: polyattn.pc ------------------------------------------------------------
set(_core_private -pthread -lm)
if(CMAKE_DL_LIBS)
  list(APPEND _core_private "-l${CMAKE_DL_LIBS}")
endif()
if(POLYATTN_LIBRARY_TYPE STREQUAL "STATIC")
  get_property(_backend_private GLOBAL PROPERTY POLYATTN_STATIC_LINK_FLAGS)
  set(_private ${_backend_private} ${_core_private})
else()
  set(_private ${_core_private})
endif()
list(REVERSE _private) # keep the last of each duplicate: a library after its users
list(REMOVE_DUPLICATES _private)
list(REVERSE _private)
string(REPLACE ";" " " POLYATTN_PC_LIBS_PRIVATE "${_private}")
# Relocatable: the prefix is found from the .pc file's own folder.
file(RELATIVE_PATH POLYATTN_PC_PREFIX_FROM_PCDIR
     "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
string(REGEX REPLACE "/$" "" POLYATTN_PC_PREFIX_FROM_PCDIR "${POLYATTN_PC_PREFIX_FROM_PCDIR}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/polyattn.pc.in ${PROJECT_BINARY_DIR}/polyattn.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/polyattn.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The Python package, pure Python: <prefix>/lib/python/polyattn loads ../../libpolyattn.so
# (PYTHONPATH=<prefix>/lib/python).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/python/polyattn
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/python PATTERN __pycache__ EXCLUDE)
