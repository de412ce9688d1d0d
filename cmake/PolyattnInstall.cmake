# `cmake --install`: the core, every backend module beside it (the core loads modules from
# its own folder), the public and interop headers, and the command-line tool.
include(GNUInstallDirs)
install(TARGETS polyattn LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
foreach(module polyattn_opencl polyattn_cuda polyattn_hip polyattn_hip_kernels)
  if(TARGET ${module})
    install(TARGETS ${module} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
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
# The Python package, pure Python: <prefix>/lib/python/polyattn loads ../../libpolyattn.so
# (PYTHONPATH=<prefix>/lib/python).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/python/polyattn
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/python PATTERN __pycache__ EXCLUDE)
